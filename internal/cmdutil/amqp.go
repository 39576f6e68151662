package cmdutil

import (
	"errors"
	"fmt"
	"os"
	"strings"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Where the binaries take the RabbitMQ URL from, besides --amqp-url and
// --amqp-url-file. The URL holds the stack's password: pass it through the
// environment or a file (mode 0600), not on a command line, which every
// user of the machine can read (ps).
const (
	EnvAMQPURL     = "RIDESHARE_AMQP_URL"
	EnvAMQPURLFile = "RIDESHARE_AMQP_URL_FILE"
)

// ErrGuest: the URL would log in as RabbitMQ's default guest account.
var ErrGuest = errors.New("the RabbitMQ URL uses the default guest account; every stack has a user of its own (scripts/servers.sh broker-user NAME FILE makes one)")

// AMQPURL resolves the RabbitMQ URL: flagURL, else the file flagFile,
// else the file $RIDESHARE_AMQP_URL_FILE, else $RIDESHARE_AMQP_URL. The
// URL must name a user other than guest (an URL without one means guest).
func AMQPURL(flagURL, flagFile string) (string, error) {
	url, src := flagURL, "--amqp-url"
	if url == "" {
		file := flagFile
		src = "--amqp-url-file"
		if file == "" {
			file, src = os.Getenv(EnvAMQPURLFile), EnvAMQPURLFile
		}
		if file != "" {
			u, err := ReadSecretFile(file)
			if err != nil {
				return "", fmt.Errorf("RabbitMQ URL (%s): %w", src, err)
			}
			url = u
		} else {
			url, src = strings.TrimSpace(os.Getenv(EnvAMQPURL)), EnvAMQPURL
		}
	}
	if url == "" {
		return "", fmt.Errorf("no RabbitMQ URL: give --amqp-url-file, %s or %s (scripts/servers.sh broker-user NAME FILE makes a vhost, a user and the file)", EnvAMQPURLFile, EnvAMQPURL)
	}
	if err := CheckAMQPURL(url); err != nil {
		return "", fmt.Errorf("RabbitMQ URL (%s): %w", src, err)
	}
	return url, nil
}

// CheckAMQPURL refuses an unparseable URL and the guest account.
func CheckAMQPURL(url string) error {
	u, err := amqp.ParseURI(url)
	if err != nil {
		return fmt.Errorf("not an AMQP URL: %w", err)
	}
	if u.Username == "guest" {
		return ErrGuest
	}
	return nil
}

// ReadSecretFile reads a one-line secret from a file that group and others
// cannot access.
func ReadSecretFile(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("%s has mode %04o: group and others must have no access (chmod 600 it)", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}
