-- The account's cash as a running balance, so a decision reads one row instead of summing the
-- account's whole ledger (which grows with every fill and funding settlement). Kept by the
-- database itself: every ledger entry (an append-only table) adds its amount in the same
-- transaction, so the balance always equals the sum of the entries.
CREATE TABLE ledger_balances (
    account_id  text        PRIMARY KEY REFERENCES trading_accounts (account_id),
    cash        numeric     NOT NULL,
    entries     bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

INSERT INTO ledger_balances (account_id, cash, entries)
SELECT account_id, sum(amount), count(*) FROM ledger_entries GROUP BY account_id;

CREATE FUNCTION add_to_ledger_balance() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ledger_balances (account_id, cash, entries)
    VALUES (NEW.account_id, NEW.amount, 1)
    ON CONFLICT (account_id) DO UPDATE
        SET cash = ledger_balances.cash + EXCLUDED.cash,
            entries = ledger_balances.entries + 1,
            updated_at = now();
    RETURN NULL;
END;
$$;

CREATE TRIGGER ledger_entries_balance AFTER INSERT ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION add_to_ledger_balance();
