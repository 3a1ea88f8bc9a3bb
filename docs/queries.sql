-- Analyst queries over the exported MQTT messages (table mqtt.messages; schema:
-- services/bigquery-adapter/internal/schema/schema.json). Each query starts with a "-- name:"
-- line; run one against the local emulator of `make run` with
--
--     make query Q=messages_per_topic_per_hour
--
-- or any SQL with make query Q='SELECT COUNT(*) FROM `mqtt.messages`'. In the BigQuery console
-- they run as they are in the project terraform made. Every query filters on published_at, the
-- partitioning column, so BigQuery reads only the days concerned.

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
