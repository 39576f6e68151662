# ZooKeeper for the DBaaS: worker registrations and the master record.
# One server (the DBaaS needs no ZooKeeper quorum to show its design).
#
#   docker:   the official zookeeper image (needs a registry to pull from)
#   raw_exec: Debian's zookeeper package (apt-get install zookeeper)

variable "datacenters" {
  type    = list(string)
  default = ["dc1"]
}

variable "driver" {
  type        = string
  default     = "docker"
  description = "Task driver: docker (zookeeper_image) or raw_exec (Debian's zookeeper package)."
  validation {
    condition     = contains(["docker", "raw_exec"], var.driver)
    error_message = "The driver must be docker or raw_exec."
  }
}

variable "zookeeper_image" {
  type    = string
  default = "zookeeper:3.8"
}

variable "classpath" {
  type        = string
  default     = "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar:/usr/share/java/*"
  description = "Java class path of the zookeeper package (raw_exec)."
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

job "rideshare-zookeeper" {
  datacenters = var.datacenters
  type        = "service"

  group "zookeeper" {
    count = 1

    network {
      port "client" {}
    }

    service {
      name     = "rideshare-zookeeper"
      provider = var.provider
      port     = "client"
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

    task "zookeeper" {
      driver = var.driver

      dynamic "config" {
        for_each = var.driver == "docker" ? [1] : []
        content {
          image        = var.zookeeper_image
          force_pull   = false
          network_mode = "host"
          args         = ["zkServer.sh", "start-foreground", "/local/zoo.cfg"]
        }
      }
      dynamic "config" {
        for_each = var.driver == "raw_exec" ? [1] : []
        content {
          command = "java"
          args    = ["-Xmx256m", "-cp", var.classpath, "org.apache.zookeeper.server.quorum.QuorumPeerMain", "${NOMAD_TASK_DIR}/zoo.cfg"]
        }
      }

      # A short tick, so the workers' 2 s sessions are allowed (failure
      # detection in about 2 s); no admin server (it would take port 8080).
      template {
        destination = "local/zoo.cfg"
        change_mode = "restart"
        data        = <<-EOT
          tickTime=500
          minSessionTimeout=1000
          initLimit=10
          syncLimit=5
          dataDir={{ env "NOMAD_ALLOC_DIR" }}/data
          clientPort={{ env "NOMAD_PORT_client" }}
          clientPortAddress={{ env "NOMAD_IP_client" }}
          admin.enableServer=false
          4lw.commands.whitelist=ruok,stat,srvr,mntr
        EOT
      }

      # Sized from what the processes used on a dev agent, idle and under
      # loadgen (docs/nomad.md, "Resources").
      resources {
        cpu    = 200
        memory = 384
      }
    }
  }
}
