-- A new contract-rules version is announced to running live engines: every row inserted into
-- instruments (sync_instruments writes one per changed contract, in the transaction that closes
-- the previous version) sends NOTIFY goldrl_instrument_rules when that transaction commits,
-- with the symbol, the version's valid_from and its content_sha256 as JSON. Engines also
-- re-read the rules periodically, so a notification sent while nobody listened is not lost.
CREATE FUNCTION notify_instrument_rules() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(
        'goldrl_instrument_rules',
        json_build_object(
            'symbol', NEW.symbol,
            'valid_from', NEW.valid_from,
            'content_sha256', NEW.content_sha256
        )::text
    );
    RETURN NULL;
END;
$$;
CREATE TRIGGER instruments_new_version_notify AFTER INSERT ON instruments
    FOR EACH ROW EXECUTE FUNCTION notify_instrument_rules();
