# Traefik, the entry point: routes /api/v1/users to users and everything
# else to rides, from the tags those services carry in Nomad's catalog
# (provider "nomad", exposedByDefault = false: only services tagged
# traefik.enable=true get a router) or in Consul's (provider "consul").
#
#   entry point      http://<node>:${http_port}/api/v1/...
#   API (routers)    http://<node>:${api_port}/api/http/routers, /api/rawdata
#
# The API runs without auth (api.insecure) on its own entrypoint: keep that
# port off any network but the node's own in production.

variable "datacenters" {
  type    = list(string)
  default = ["dc1"]
}

variable "driver" {
  type        = string
  default     = "docker"
  description = "Task driver: docker (traefik_image) or raw_exec (bin_dir/traefik, as `make traefik` builds it)."
  validation {
    condition     = contains(["docker", "raw_exec"], var.driver)
    error_message = "The driver must be docker or raw_exec."
  }
}

variable "traefik_image" {
  type    = string
  default = "traefik:v3.6"
}

variable "bin_dir" {
  type        = string
  default     = "/opt/rideshare/bin"
  description = "Absolute path of the directory holding the traefik binary (raw_exec driver)."
}

variable "provider" {
  type        = string
  default     = "nomad"
  description = "Where Traefik reads the routes: nomad (Nomad's catalog) or consul (Consul's catalog)."
  validation {
    condition     = contains(["nomad", "consul"], var.provider)
    error_message = "The provider must be nomad or consul."
  }
}

variable "http_port" {
  type        = number
  default     = 8080
  description = "The entry point's port (static: clients need to know it)."
}

variable "api_port" {
  type        = number
  default     = 8088
  description = "Traefik's API and /ping."
}

variable "nomad_port" {
  type    = number
  default = 4646
}

variable "consul_port" {
  type    = number
  default = 8500
}

locals {
  args = [
    "--global.checkNewVersion=false",
    "--global.sendAnonymousUsage=false",
    "--entrypoints.web.address=${NOMAD_ADDR_web}",
    "--entrypoints.traefik.address=${NOMAD_ADDR_api}",
    "--api.insecure=true",
    "--api.dashboard=false",
    "--ping=true",
    "--ping.entrypoint=traefik",
    "--log.level=INFO",
    "--accesslog=true",
    "--accesslog.format=json",
    "--accesslog.fields.headers.defaultmode=drop",
    "--accesslog.fields.headers.names.X-Request-Id=keep",
    "--providers.nomad=${var.provider == "nomad"}",
    "--providers.nomad.exposedByDefault=false",
    "--providers.nomad.refreshInterval=5s",
    "--providers.nomad.endpoint.address=http://${attr.unique.network.ip-address}:${var.nomad_port}",
    "--providers.consulcatalog=${var.provider == "consul"}",
    "--providers.consulcatalog.exposedByDefault=false",
    "--providers.consulcatalog.refreshInterval=5s",
    "--providers.consulcatalog.endpoint.address=${attr.unique.network.ip-address}:${var.consul_port}",
  ]
}

job "rideshare-traefik" {
  datacenters = var.datacenters
  type        = "service"

  group "traefik" {
    count = 1

    network {
      port "web" {
        static = var.http_port
      }
      port "api" {
        static = var.api_port
      }
    }

    # Traefik itself is not routed (no traefik.enable tag); rides finds the
    # entry point through this service.
    service {
      name     = "traefik"
      provider = var.provider
      port     = "web"
      check {
        type     = "http"
        port     = "api"
        path     = "/ping"
        interval = "5s"
        timeout  = "2s"
      }
    }

    restart {
      attempts = 5
      interval = "5m"
      delay    = "2s"
      mode     = "delay"
    }

    reschedule {
      delay          = "5s"
      delay_function = "exponential"
      max_delay      = "1m"
      unlimited      = true
    }

    update {
      max_parallel     = 1
      health_check     = "checks"
      min_healthy_time = "5s"
      healthy_deadline = "2m"
      auto_revert      = true
    }

    task "traefik" {
      driver = var.driver

      dynamic "config" {
        for_each = var.driver == "docker" ? [1] : []
        content {
          image        = var.traefik_image
          force_pull   = false
          network_mode = "host"
          args         = local.args
        }
      }
      dynamic "config" {
        for_each = var.driver == "raw_exec" ? [1] : []
        content {
          command = "${var.bin_dir}/traefik"
          args    = local.args
        }
      }

      # Sized from what the processes used on a dev agent, idle and under
      # loadgen (docs/nomad.md, "Resources").
      resources {
        cpu    = 200
        memory = 192
      }
    }
  }
}
