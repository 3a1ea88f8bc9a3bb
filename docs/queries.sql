-- Analyst queries over the exported MQTT messages (table mqtt.messages; schema:
-- services/bigquery-adapter/internal/schema/schema.json) and the devices' presence (table
-- mqtt.events: every CONNECT and disconnect; schema: .../schema/events.json). Each query starts
-- with a "-- name:" line; run one against the local emulator of `make run` with
--
--     make query Q=messages_per_topic_per_hour
--
-- or any SQL with make query Q='SELECT COUNT(*) FROM `mqtt.messages`'. In the BigQuery console
-- they run as they are in the project terraform made. Every query filters on the partitioning
-- column (published_at, occurred_at), so BigQuery reads only the days concerned.

-- name: messages_per_topic_per_hour
-- Messages per topic and hour over the last day.
SELECT topic, TIMESTAMP_TRUNC(published_at, HOUR) AS hour, COUNT(*) AS messages
FROM `mqtt.messages`
WHERE published_at >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 1 DAY)
GROUP BY topic, hour
ORDER BY hour DESC, messages DESC, topic;

-- name: latest_value_per_device
-- The latest payload each device (client id) published on each topic in the last week.
SELECT client_id, topic, payload_text, published_at
FROM (
  SELECT client_id, topic, payload_text, published_at,
         ROW_NUMBER() OVER (PARTITION BY client_id, topic ORDER BY published_at DESC) AS rn
  FROM `mqtt.messages`
  WHERE published_at >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 7 DAY)
)
WHERE rn = 1
ORDER BY client_id, topic;

-- name: gaps_per_client
-- Silences longer than five minutes between two messages of the same client in the last day.
SELECT client_id, prev_at AS gap_start, published_at AS gap_end,
       TIMESTAMP_DIFF(published_at, prev_at, SECOND) AS gap_seconds
FROM (
  SELECT client_id, published_at,
         LAG(published_at) OVER (PARTITION BY client_id ORDER BY published_at) AS prev_at
  FROM `mqtt.messages`
  WHERE published_at >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 1 DAY)
)
WHERE prev_at IS NOT NULL AND TIMESTAMP_DIFF(published_at, prev_at, SECOND) > 300
ORDER BY gap_seconds DESC, client_id;

-- name: latest_temperature_per_device
-- The latest temperature and battery level each device reported in the last week, read from JSON
-- payloads such as {"temperature": 21.5, "battery": {"percent": 80}} (payload_json holds every
-- payload that is valid JSON; no string parsing), whatever the topic.
SELECT client_id, temperature, battery_percent, topic, published_at
FROM (
  SELECT client_id, topic, published_at,
         SAFE_CAST(JSON_VALUE(payload_json, '$.temperature') AS FLOAT64) AS temperature,
         SAFE_CAST(JSON_VALUE(payload_json, '$.battery.percent') AS INT64) AS battery_percent,
         ROW_NUMBER() OVER (PARTITION BY client_id ORDER BY published_at DESC) AS rn
  FROM `mqtt.messages`
  WHERE published_at >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 7 DAY)
    AND JSON_VALUE(payload_json, '$.temperature') IS NOT NULL
)
WHERE rn = 1
ORDER BY client_id;

-- name: hourly_average_temperature
-- Average, lowest and highest temperature per device and hour over the last day.
SELECT client_id, TIMESTAMP_TRUNC(published_at, HOUR) AS hour,
       AVG(SAFE_CAST(JSON_VALUE(payload_json, '$.temperature') AS FLOAT64)) AS avg_temperature,
       MIN(SAFE_CAST(JSON_VALUE(payload_json, '$.temperature') AS FLOAT64)) AS min_temperature,
       MAX(SAFE_CAST(JSON_VALUE(payload_json, '$.temperature') AS FLOAT64)) AS max_temperature,
       COUNT(*) AS readings
FROM `mqtt.messages`
WHERE published_at >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 1 DAY)
  AND JSON_VALUE(payload_json, '$.temperature') IS NOT NULL
GROUP BY client_id, hour
ORDER BY client_id, hour;

-- name: uptime_per_device
-- How long each device was connected during the last day, in seconds, and over how many
-- connections. A connection lasts from its connect to its disconnect; one with no disconnect (it
-- is still open, or its replica crashed and could not write one) lasts until the device's next
-- connect, or until now. A takeover (the device connecting again before the old connection was
-- closed) is counted once. Connections opened up to a week ago count for their part in the day.
WITH connects AS (
  SELECT client_id, connection_id, occurred_at AS start_at,
         LEAD(occurred_at) OVER (PARTITION BY client_id ORDER BY occurred_at) AS next_connect
  FROM `mqtt.events`
  WHERE event = 'connect' AND occurred_at >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 7 DAY)
),
disconnects AS (
  SELECT connection_id, occurred_at AS end_at
  FROM `mqtt.events`
  WHERE event = 'disconnect' AND occurred_at >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 7 DAY)
),
spans AS (
  SELECT c.client_id,
         GREATEST(c.start_at, TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 1 DAY)) AS from_at,
         LEAST(COALESCE(d.end_at, c.next_connect, CURRENT_TIMESTAMP()), COALESCE(c.next_connect, CURRENT_TIMESTAMP())) AS to_at
  FROM connects c LEFT JOIN disconnects d ON d.connection_id = c.connection_id
)
SELECT client_id, COUNT(*) AS connections, SUM(TIMESTAMP_DIFF(to_at, from_at, SECOND)) AS seconds_online
FROM spans
WHERE to_at > from_at
GROUP BY client_id
ORDER BY client_id;

-- name: devices_offline_now
-- Devices seen in the last week whose latest connection has ended: since when, why (normal,
-- connection_lost, keepalive_timeout, protocol_error, takeover, replica_drain, slow_consumer,
-- credentials_expired, kicked) and on which replica. A device whose replica crashed has no disconnect and counts as
-- online until it connects again (usually at once, to another replica).
SELECT client_id, offline_since, cause, broker_id
FROM (
  SELECT c.client_id, c.broker_id, d.occurred_at AS offline_since, d.cause,
         ROW_NUMBER() OVER (PARTITION BY c.client_id ORDER BY c.occurred_at DESC) AS rn
  FROM `mqtt.events` c
  LEFT JOIN (
    SELECT connection_id, occurred_at, cause FROM `mqtt.events`
    WHERE event = 'disconnect' AND occurred_at >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 7 DAY)
  ) d ON d.connection_id = c.connection_id
  WHERE c.event = 'connect' AND c.occurred_at >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 7 DAY)
)
WHERE rn = 1 AND offline_since IS NOT NULL
ORDER BY offline_since DESC, client_id;
