-- Request budget shared by every goldrl process that talks to BingX from this IP.
-- One row per limit group (locked with SELECT … FOR UPDATE to serialise grants) and a log of
-- grants inside the sliding window; times are epoch seconds from the database's clock, so all
-- processes agree on them.

CREATE TABLE rate_budget_groups (
    group_name  text PRIMARY KEY
);

CREATE TABLE rate_budget_grants (
    group_name  text             NOT NULL REFERENCES rate_budget_groups (group_name),
    granted_at  double precision NOT NULL,
    weight      integer          NOT NULL CHECK (weight > 0)
);
CREATE INDEX rate_budget_grants_by_time ON rate_budget_grants (group_name, granted_at);
