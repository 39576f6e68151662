package rides

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/rideshare-dbaas/rideshare/internal/reqid"
)

// UserChecker tells whether a user exists.
type UserChecker interface {
	Exists(ctx context.Context, username string) (bool, error)
}

// balancerUsers asks the users service, through the load balancer, for
// GET /api/v1/users with an Origin header naming this service.
type balancerUsers struct {
	client *http.Client
	url    string // {users-url}/api/v1/users
	origin string
}

var _ UserChecker = (*balancerUsers)(nil)

// usersTimeout bounds a check whose context has no deadline.
const usersTimeout = 15 * time.Second

func (b *balancerUsers) Exists(ctx context.Context, username string) (bool, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, usersTimeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.url, nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Origin", b.origin)
	req.Header.Set("Accept", "application/json")
	reqid.Set(ctx, req.Header) // the users service logs the same id
	resp, err := b.client.Do(req)
	if err != nil {
		return false, fmt.Errorf("users service: %w", err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNoContent:
		return false, nil
	case http.StatusOK:
		var names []string
		if err := json.NewDecoder(resp.Body).Decode(&names); err != nil {
			return false, fmt.Errorf("users service: undecodable list: %w", err)
		}
		return slices.Contains(names, username), nil
	}
	b2, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	return false, fmt.Errorf("users service: HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(b2)))
}
