-- The expiring apps' credential kind and expiry, keyed like apps: an index of `apps` that every app
-- write keeps in the same transaction, so a start reads the expiring apps without scanning every
-- app. Filled here from the apps already stored (inside the migration's transaction, so no app
-- write of a running node falls between the scan and the index).
CREATE TABLE app_expiries (key bytea PRIMARY KEY, value bytea NOT NULL);
INSERT INTO app_expiries (key, value)
SELECT key,
       convert_to(jsonb_build_object(
           'v', 1,
           'tenant_id', record ->> 'tenant_id',
           'client_id', record ->> 'client_id',
           'kind', record ->> 'kind',
           'expires_at', record ->> 'expires_at')::text, 'UTF8')
FROM (SELECT key, convert_from(value, 'UTF8')::jsonb AS record FROM apps) AS stored
WHERE record ? 'expires_at';
