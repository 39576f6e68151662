# RabbitMQ for the DBaaS: writeQ, readQ, syncQ, repairQ.
#
#   docker:   the official rabbitmq image (needs a registry to pull from)
#   raw_exec: Debian's rabbitmq-server package, run as the task's user with
#             its node, data and logs in the allocation

variable "datacenters" {
  type    = list(string)
  default = ["dc1"]
}

variable "driver" {
  type        = string
  default     = "docker"
  description = "Task driver: docker (rabbitmq_image) or raw_exec (Debian's rabbitmq-server package)."
  validation {
    condition     = contains(["docker", "raw_exec"], var.driver)
    error_message = "The driver must be docker or raw_exec."
  }
}

variable "rabbitmq_image" {
  type    = string
  default = "rabbitmq:3.10"
}

variable "rabbitmq_server" {
  type        = string
  default     = "/usr/lib/rabbitmq/bin/rabbitmq-server"
  description = "The server start script of the rabbitmq-server package (raw_exec)."
}

variable "provider" {
  type        = string
  default     = "nomad"
  description = "Service discovery: nomad (native) or consul."
  validation {
    condition     = contains(["nomad", "consul"], var.provider)
    error_message = "The provider must be nomad or consul."
  }
}

job "rideshare-rabbitmq" {
  datacenters = var.datacenters
  type        = "service"

  group "rabbitmq" {
    count = 1

    network {
      port "amqp" {}
      port "dist" {}
    }

    service {
      name     = "rideshare-rabbitmq"
      provider = var.provider
      port     = "amqp"
      check {
        type     = "tcp"
        interval = "5s"
        timeout  = "2s"
      }
    }

    restart {
      attempts = 5
      interval = "5m"
      delay    = "5s"
      mode     = "delay"
    }

    reschedule {
      delay          = "15s"
      delay_function = "exponential"
      max_delay      = "2m"
      unlimited      = true
    }

    update {
      max_parallel     = 1
      health_check     = "checks"
      min_healthy_time = "5s"
      healthy_deadline = "3m"
    }

    task "rabbitmq" {
      driver = var.driver

      dynamic "config" {
        for_each = var.driver == "docker" ? [1] : []
        content {
          image        = var.rabbitmq_image
          force_pull   = false
          network_mode = "host"
        }
      }
      dynamic "config" {
        for_each = var.driver == "raw_exec" ? [1] : []
        content {
          command = var.rabbitmq_server
        }
      }

      # Everything on the allocation's address and ports; the node's name,
      # data and logs are the allocation's, so it never meets another
      # RabbitMQ on the same machine. The Erlang distribution listens on
      # the same interface only.
      template {
        destination = "local/rabbitmq.env"
        env         = true
        change_mode = "restart"
        data        = <<-EOT
          RABBITMQ_NODE_IP_ADDRESS={{ env "NOMAD_IP_amqp" }}
          RABBITMQ_NODE_PORT={{ env "NOMAD_PORT_amqp" }}
          RABBITMQ_DIST_PORT={{ env "NOMAD_PORT_dist" }}
          ERL_EPMD_ADDRESS={{ env "NOMAD_IP_amqp" }}
          RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {{ "{" }}{{ env "NOMAD_IP_amqp" | replaceAll "." "," }}{{ "}" }}
          RABBITMQ_NODENAME=rideshare-{{ env "NOMAD_SHORT_ALLOC_ID" }}@localhost
          RABBITMQ_MNESIA_BASE={{ env "NOMAD_ALLOC_DIR" }}/data/mnesia
          RABBITMQ_LOG_BASE={{ env "NOMAD_ALLOC_DIR" }}/logs/rabbitmq
          RABBITMQ_ENABLED_PLUGINS_FILE={{ env "NOMAD_TASK_DIR" }}/enabled_plugins
          HOME={{ env "NOMAD_TASK_DIR" }}
        EOT
      }

      template {
        destination = "local/enabled_plugins"
        data        = "[].\n"
      }

      kill_timeout = "30s"

      # Sized from what the processes used on a dev agent, idle and under
      # loadgen (docs/nomad.md, "Resources").
      resources {
        cpu    = 300
        memory = 512
      }
    }
  }
}
