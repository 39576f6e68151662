locals {
  # Traefik runs on a Nomad client; with a dev agent that is the agent's host.
  entry_host = regex("^https?://([^:/]+)", var.nomad_addr)[0]
}

output "entry_url" {
  description = "The public API, through Traefik."
  value       = "http://${local.entry_host}:${var.http_port}/api/v1/"
}

output "traefik_api_url" {
  description = "Traefik's routers as it sees them (its API, no auth: keep it private)."
  value       = "http://${local.entry_host}:${var.api_port}/api/http/routers"
}

output "nomad_ui" {
  description = "The jobs in Nomad (`nomad job status rideshare-worker` shows the scaling)."
  value       = "${var.nomad_addr}/ui/jobs"
}
