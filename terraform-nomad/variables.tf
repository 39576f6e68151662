variable "nomad_addr" {
  type        = string
  default     = "http://127.0.0.1:4646"
  description = "Nomad's HTTP API (a dev agent's default). The ACL token, if any, comes from NOMAD_TOKEN."
}

variable "datacenters" {
  type    = list(string)
  default = ["dc1"]
}

variable "driver" {
  type        = string
  default     = "docker"
  description = "docker (the rideshare/* images) or raw_exec (the binaries of `make build` in bin_dir)."
  validation {
    condition     = contains(["docker", "raw_exec"], var.driver)
    error_message = "The driver must be docker or raw_exec."
  }
}

variable "image_tag" {
  type        = string
  default     = "dev"
  description = "Tag of the rideshare/orchestrator, worker, users and rides images (docker driver)."
}

variable "bin_dir" {
  type        = string
  default     = "/opt/rideshare/bin"
  description = "Absolute path of the binaries (raw_exec driver): the repository's bin/ after `make build` and `make traefik`."
}

variable "provider_name" {
  type        = string
  default     = "nomad"
  description = "Service discovery for every job: nomad (native) or consul."
  validation {
    condition     = contains(["nomad", "consul"], var.provider_name)
    error_message = "The provider must be nomad or consul."
  }
}

variable "worker_count" {
  type        = number
  default     = 2
  description = "Workers at the first run (the orchestrator scales the group from there)."
}

variable "worker_max" {
  type        = number
  default     = 9
  description = "Most workers (the worker group's scaling max); the orchestrator asks for one less slave."
}

variable "users_count" {
  type    = number
  default = 2
}

variable "rides_count" {
  type    = number
  default = 2
}

variable "http_port" {
  type        = number
  default     = 8080
  description = "Traefik's entry point."
}

variable "api_port" {
  type        = number
  default     = 8088
  description = "Traefik's API (routers, services)."
}

variable "scale_window" {
  type        = string
  default     = "2m"
  description = "The orchestrator's autoscaling window."
}
