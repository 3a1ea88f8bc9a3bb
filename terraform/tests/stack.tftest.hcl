# Plans the whole stack against a mocked google provider: no credentials, no API calls. Run with
# `tofu test` (or `terraform test`) after `init -backend=false`; scripts/infra-test.sh does.
mock_provider "google" {}

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
