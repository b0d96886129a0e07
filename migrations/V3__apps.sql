-- App registrations (tenant, client id) with their sealed credential, as the store's other tables:
-- key = `tenant/client`, value = the encoded record.
CREATE TABLE apps (key bytea PRIMARY KEY, value bytea NOT NULL);
