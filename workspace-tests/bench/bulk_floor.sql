-- The database floor of a bulk rotation: the rows a bulk rotation of every current key of one
-- API writes, written by set-based SQL in one transaction, with no application in between.
-- bulk_bench.py times it beside Keyroll's own bulk rotation of the same keys (mode `floor`).
--
--   psql "$URL" -v tenant=ten_… -v api=api_… -v actor=root_key:key_… -f bulk_floor.sql
--
-- Per key, as Keyroll writes them: the locked candidate row; earlier versions still in grace end
-- now; a new version (hash of a fresh secret, same lineage, scopes, limits and expiry); the old
-- version superseded with a grace window of 600 s (never past its expiry); a rotation record; a
-- `rotation.started` event; a delivery to every tenant-wide webhook endpoint and one email to the
-- consumer; the new secret held sealed for pickup; an audit entry chained to the tenant's head;
-- and one invalidation log row naming every old and new hash.
--
-- What the floor leaves out, so it is a little lower than any real run: it computes each audit
-- hash from the entry and the previous entry's content (`lag`), where the real chain needs each
-- hash before the next; random bytes stand in for sealing (no AES); and it takes one lock for
-- the whole set, where Keyroll commits in batches so verification and other writes go on.

\set ON_ERROR_STOP on
BEGIN;

-- The candidates, locked.
CREATE TEMP TABLE cand ON COMMIT DROP AS
SELECT k.id, k.lineage_id, k.version, k.consumer_id, k.start, k.expires_at
FROM keys k
WHERE k.tenant_id = :'tenant' AND k.api_id = :'api' AND NOT k.is_root
  AND k.revoked_at IS NULL AND k.enabled
  AND (k.expires_at IS NULL OR k.expires_at > now())
  AND k.grace_ends_at IS NULL
ORDER BY k.id
FOR UPDATE;

-- One plan row per key: the new ids (time-ordered like Keyroll's), the new secret's hash and
-- start, the grace window and the next version number of the lineage.
CREATE TEMP TABLE plan ON COMMIT DROP AS
WITH numbered AS (
  SELECT c.*, row_number() OVER (ORDER BY c.id) AS n,
         lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0') AS ms,
         md5(random()::text) || md5(random()::text) AS secret
  FROM cand c
), top AS (
  SELECT k.lineage_id, max(k.version) AS version FROM keys k
  WHERE k.lineage_id IN (SELECT lineage_id FROM cand) GROUP BY k.lineage_id
)
SELECT nb.id AS old_id, nb.lineage_id, nb.version AS old_version, nb.consumer_id, nb.start AS old_start, nb.n,
       'key_' || nb.ms || lpad(to_hex(nb.n), 14, '0') AS new_id,
       'rot_' || nb.ms || lpad(to_hex(nb.n), 14, '0') AS rot_id,
       'evt_' || nb.ms || lpad(to_hex(nb.n), 14, '0') AS evt_id,
       encode(sha256(convert_to(nb.secret, 'UTF8')), 'hex') AS new_hash,
       'bulk_live_' || substr(nb.secret, 1, 8) AS new_start,
       top.version + 1 AS new_version,
       LEAST(nb.expires_at, now() + interval '600 seconds') AS old_grace
FROM numbered nb JOIN top USING (lineage_id);

-- Earlier versions still in grace end now, and their rotations complete.
CREATE TEMP TABLE ending (id text, hash text) ON COMMIT DROP;
WITH u AS (
  UPDATE keys SET grace_ends_at = now()
  WHERE lineage_id IN (SELECT lineage_id FROM plan) AND grace_ends_at > now()
  RETURNING id, hash
) INSERT INTO ending SELECT * FROM u;
UPDATE rotations SET state = 'completed', ended_at = now(), reason = 'retired by a bulk rotation'
WHERE from_key_id IN (SELECT id FROM ending) AND state = 'in_progress';

-- The new versions.
INSERT INTO keys (id, tenant_id, api_id, consumer_id, lineage_id, version, is_root, hash, start, name, scopes, meta,
                  enabled, expires_at, grace_ends_at, superseded_at, revoked_at, revoked_reason, last_used_at,
                  ratelimit, credits, ip_allowlist, created_by, created_at, updated_at)
SELECT p.new_id, k.tenant_id, k.api_id, k.consumer_id, k.lineage_id, p.new_version, false, p.new_hash, p.new_start,
       k.name, k.scopes, k.meta, k.enabled, k.expires_at, NULL, NULL, NULL, NULL, NULL,
       k.ratelimit, k.credits, k.ip_allowlist, :'actor', now(), now()
FROM plan p JOIN keys k ON k.id = p.old_id;

-- The old versions: superseded, in grace.
UPDATE keys SET superseded_at = now(), grace_ends_at = p.old_grace, updated_at = now()
FROM plan p WHERE keys.id = p.old_id;

INSERT INTO rotations (id, tenant_id, lineage_id, from_key_id, to_key_id, trigger, actor, retire_mode, compromise,
                       state, reason, started_at, grace_ends_at, ended_at, updated_at)
SELECT p.rot_id, :'tenant', p.lineage_id, p.old_id, p.new_id, 'api', :'actor', 'at_deadline', true,
       'in_progress', NULL, now(), p.old_grace, NULL, now()
FROM plan p;

INSERT INTO events (id, tenant_id, type, payload, created_at)
SELECT p.evt_id, :'tenant', 'rotation.started',
       json_build_object('rotation_id', p.rot_id, 'lineage_id', p.lineage_id, 'key_id', p.old_id,
                         'key_start', p.old_start, 'version', p.old_version, 'consumer_id', p.consumer_id,
                         'state', 'in_progress', 'trigger', 'api', 'retire_mode', 'at_deadline',
                         'started_at', now(), 'grace_ends_at', p.old_grace, 'new_key_id', p.new_id,
                         'new_version', p.new_version, 'bulk', true),
       now()
FROM plan p;

-- A delivery to every tenant-wide endpoint, and an email to the consumer.
INSERT INTO deliveries (id, tenant_id, event_id, channel, endpoint_id, recipient, state, attempts, next_attempt_at,
                        locked_until, last_status, last_error, delivered_at, created_at)
SELECT 'dlv_' || substr(p.evt_id, 5, 12) || lpad(to_hex(2 * p.n + d.k), 14, '0'), :'tenant', p.evt_id, d.channel,
       d.endpoint_id, d.recipient, 'pending', 0, now(), NULL, NULL, NULL, NULL, now()
FROM plan p
CROSS JOIN LATERAL (
  SELECT 0 AS k, 'webhook' AS channel, w.id AS endpoint_id, NULL::text AS recipient
  FROM webhook_endpoints w WHERE w.tenant_id = :'tenant' AND w.enabled AND w.consumer_id IS NULL
  UNION ALL
  SELECT 1, 'email', NULL, c.email FROM consumers c WHERE c.id = p.consumer_id AND c.email IS NOT NULL
) d;

-- The new secrets, held for pickup (random bytes of a sealed secret's length).
INSERT INTO pending_secrets (key_id, tenant_id, lineage_id, sealed, created_at, expires_at)
SELECT p.new_id, :'tenant', p.lineage_id,
       'v1:' || encode(sha256(convert_to(p.new_hash, 'UTF8')) || sha256(convert_to(p.rot_id, 'UTF8'))
                       || substr(sha256(convert_to(p.evt_id, 'UTF8')), 1, 4), 'base64'),
       now(), p.old_grace + interval '7 days'
FROM plan p;

-- One audit entry per key, numbered after the tenant's chain head.
CREATE TEMP TABLE head (seq bigint, hash text) ON COMMIT DROP;
WITH h AS (
  INSERT INTO audit_heads (tenant_id, seq, hash, pruned_seq, anchor_hash)
  VALUES (:'tenant', (SELECT count(*) FROM plan), repeat('0', 64), 0, repeat('0', 64))
  ON CONFLICT (tenant_id) DO UPDATE SET seq = audit_heads.seq + EXCLUDED.seq
  RETURNING seq, hash
) INSERT INTO head SELECT * FROM h;

CREATE TEMP TABLE entries ON COMMIT DROP AS
WITH e AS (
  SELECT 'aud_' || substr(p.evt_id, 5, 12) || lpad(to_hex(p.n), 14, '0') AS id,
         (SELECT seq FROM head) - (SELECT count(*) FROM plan) + p.n AS seq,
         'key.rotated' AS action, p.old_id AS target_id,
         format('Rotated key %s v%s → v%s; v%s valid until %s (bulk rotation)', p.old_start, p.old_version,
                p.new_version, p.old_version, to_char(p.old_grace, 'YYYY-MM-DD HH24:MI "UTC"')) AS summary,
         json_build_object('rotation_id', p.rot_id, 'lineage_id', p.lineage_id, 'trigger', 'api',
                           'retire_mode', 'at_deadline', 'compromise', true, 'new_key_id', p.new_id,
                           'new_key_start', p.new_start, 'grace_ends_at', p.old_grace,
                           'older_versions_ended', 0)::text AS data
  FROM plan p
), h AS (
  SELECT e.*, encode(sha256(convert_to(e.seq || e.action || e.target_id || e.summary || e.data, 'UTF8')), 'hex') AS own
  FROM e
)
SELECT h.*, COALESCE(lag(h.own) OVER (ORDER BY h.seq), (SELECT hash FROM head)) AS prev_hash FROM h;

INSERT INTO audit_events (id, tenant_id, seq, occurred_at, actor, action, target_type, target_id, summary, request_id,
                          ip, data, prev_hash, hash)
SELECT x.id, :'tenant', x.seq, now(), :'actor', x.action, 'key', x.target_id, x.summary, NULL, NULL, x.data,
       x.prev_hash, encode(sha256(convert_to(x.prev_hash || x.own, 'UTF8')), 'hex')
FROM entries x;

UPDATE audit_heads SET hash = COALESCE((SELECT encode(sha256(convert_to(x.prev_hash || x.own, 'UTF8')), 'hex')
                                        FROM entries x ORDER BY x.seq DESC LIMIT 1), hash)
WHERE tenant_id = :'tenant';

-- Every node drops the old records and any cached miss of the new hashes.
INSERT INTO invalidations (hashes, created, created_ms)
SELECT (SELECT string_agg(k.hash, ' ') FROM keys k WHERE k.id IN (SELECT old_id FROM plan UNION ALL SELECT id FROM ending)),
       (SELECT string_agg(new_hash, ' ') FROM plan),
       (extract(epoch FROM clock_timestamp()) * 1000)::bigint
WHERE EXISTS (SELECT 1 FROM plan);

COMMIT;
