-- What became of each live decision's order, now that orders go through the execution engine
-- (orders, fills and ledger_entries hold the detail; decision_id links them). position_after,
-- cash_after and equity_after are the ledger's after the order: cash is deposits + realised PnL
-- − fees + funding, equity adds the open position's unrealised PnL at the bar's close.
-- paper_fills is no longer written (fills come from the ledger); its rows stay as history.
ALTER TABLE live_decisions
    ADD COLUMN account_id      text,
    ADD COLUMN outcome         text,
    ADD COLUMN client_order_id text;

COMMENT ON TABLE paper_fills IS
    'History of the pre-ledger paper broker; fills of paper and live orders are in fills.';
