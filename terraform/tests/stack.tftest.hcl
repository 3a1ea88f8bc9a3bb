# Plans the whole stack against a mocked google provider: no credentials, no API calls. Run with
# `tofu test` (or `terraform test`) after `init -backend=false`; scripts/infra-test.sh does.
mock_provider "google" {
  # Computed values the mock would make up at random, where the real provider validates their form
  # when another resource uses them (service_account_id must be a service account's resource name).
  mock_resource "google_service_account" {
    defaults = {
      name  = "projects/mcloudtt-test/serviceAccounts/mcloudtt-adapter@mcloudtt-test.iam.gserviceaccount.com"
      email = "mcloudtt-adapter@mcloudtt-test.iam.gserviceaccount.com"
    }
  }
}

variables {
  project_id = "mcloudtt-test"
}

run "plan_whole_stack" {
  command = plan

  assert {
    condition     = google_container_cluster.autopilot.enable_autopilot == true
    error_message = "the cluster must be Autopilot"
  }

  assert {
    condition     = google_container_cluster.autopilot.private_cluster_config[0].enable_private_nodes == true
    error_message = "nodes must have no public addresses"
  }

  assert {
    condition     = google_compute_router_nat.nat.source_subnetwork_ip_ranges_to_nat == "ALL_SUBNETWORKS_ALL_IP_RANGES"
    error_message = "Cloud NAT must cover the cluster's subnet"
  }

  assert {
    condition     = google_compute_subnetwork.gke.private_ip_google_access == true
    error_message = "private nodes need Private Google Access"
  }

  assert {
    condition     = google_artifact_registry_repository.images.format == "DOCKER"
    error_message = "the image repository must be a Docker repository"
  }

  assert {
    condition     = output.image_repository == "europe-west1-docker.pkg.dev/mcloudtt-test/mcloudtt"
    error_message = "image_repository is skaffold's --default-repo and must be the Artifact Registry path"
  }

  assert {
    condition     = google_redis_instance.cache.connect_mode == "DIRECT_PEERING" && google_redis_instance.cache.reserved_ip_range == "10.30.0.0/29"
    error_message = "Memorystore must be peered into the VPC in the range the gke overlay allows"
  }

  assert {
    condition     = google_redis_instance.cache.redis_configs["maxmemory-policy"] == "noeviction"
    error_message = "Redis must never evict the export stream"
  }

  assert {
    condition     = google_redis_instance.cache.auth_enabled == true && google_redis_instance.cache.transit_encryption_mode == "SERVER_AUTHENTICATION"
    error_message = "Memorystore must require AUTH and speak TLS only, authenticating the server"
  }

  assert {
    condition     = google_redis_instance.cache.tier == "STANDARD_HA"
    error_message = "the production default must be the highly available tier"
  }

  assert {
    condition     = google_redis_instance.cache.persistence_config[0].persistence_mode == "RDB" && google_redis_instance.cache.persistence_config[0].rdb_snapshot_period == "ONE_HOUR"
    error_message = "Memorystore must keep RDB snapshots, hourly by default"
  }

  assert {
    condition     = google_redis_instance.cache.deletion_protection == true
    error_message = "the instance holding sessions and the export backlog must be protected from deletion"
  }

  assert {
    condition     = google_compute_address.broker.address_type == "EXTERNAL" && google_compute_address.broker.region == "europe-west1"
    error_message = "the brokers need a reserved regional external address (a global one cannot front a passthrough load balancer)"
  }

  assert {
    condition     = google_bigquery_table.messages.time_partitioning[0].field == "published_at" && google_bigquery_table.messages.time_partitioning[0].type == "DAY"
    error_message = "the messages table must be partitioned by DATE(published_at)"
  }

  assert {
    condition     = tolist(google_bigquery_table.messages.clustering) == tolist(["topic", "client_id"])
    error_message = "the messages table must be clustered by topic and client_id"
  }

  assert {
    condition     = google_bigquery_table.events.time_partitioning[0].field == "occurred_at" && google_bigquery_table.events.time_partitioning[0].type == "DAY" && tolist(google_bigquery_table.events.clustering) == tolist(["client_id"])
    error_message = "the events table must be partitioned by DATE(occurred_at) and clustered by client_id"
  }

  assert {
    condition     = jsondecode(google_bigquery_table.events.schema) == jsondecode(file("${path.module}/../services/bigquery-adapter/internal/schema/events.json"))
    error_message = "the events table schema must be the adapter's events.json"
  }

  assert {
    condition     = jsondecode(google_bigquery_table.messages.schema) == jsondecode(file("${path.module}/../services/bigquery-adapter/internal/schema/schema.json"))
    error_message = "the table schema must be the adapter's schema file"
  }

  assert {
    condition     = google_service_account_iam_member.adapter_workload_identity.member == "serviceAccount:mcloudtt-test.svc.id.goog[mcloudtt/bigquery-adapter]"
    error_message = "Workload Identity must bind exactly the adapter's Kubernetes ServiceAccount"
  }

  assert {
    condition     = google_bigquery_table_iam_member.adapter_writer.role == "roles/bigquery.dataEditor" && google_bigquery_table_iam_member.adapter_events_writer.role == "roles/bigquery.dataEditor" && google_bigquery_table_iam_member.adapter_events_writer.table_id == "events"
    error_message = "the adapter may write the messages and events tables and nothing more"
  }
}

run "partition_expiry" {
  command = plan

  variables {
    partition_expiration_days = 400
  }

  assert {
    condition     = google_bigquery_table.messages.time_partitioning[0].expiration_ms == 400 * 86400000
    error_message = "partition_expiration_days must become the partition expiry"
  }
}

run "basic_tier_keeps_snapshots" {
  command = plan

  variables {
    redis_tier                = "BASIC"
    redis_rdb_snapshot_period = "SIX_HOURS"
  }

  assert {
    condition     = google_redis_instance.cache.tier == "BASIC" && google_redis_instance.cache.persistence_config[0].rdb_snapshot_period == "SIX_HOURS"
    error_message = "the BASIC tier keeps RDB snapshots too, at the period asked for"
  }

  assert {
    condition     = google_redis_instance.cache.auth_enabled == true && google_redis_instance.cache.transit_encryption_mode == "SERVER_AUTHENTICATION"
    error_message = "AUTH and TLS do not depend on the tier"
  }
}

run "snapshot_period_is_validated" {
  command = plan

  variables {
    redis_rdb_snapshot_period = "TEN_MINUTES"
  }

  expect_failures = [var.redis_rdb_snapshot_period]
}
