package httpx

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/rideshare-dbaas/rideshare/internal/dbaasclient"
)

// DBFailure answers an error from the DBaaS that the handler did not map to
// a contract status itself: a refusal the handler did not expect is the
// client's input being refused (400 with the DBaaS's message); anything
// else means the database could not answer (503).
func DBFailure(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	var re *dbaasclient.RefusalError
	if errors.As(err, &re) {
		WriteError(w, http.StatusBadRequest, re.Message)
		return
	}
	if errors.Is(r.Context().Err(), context.Canceled) {
		log.DebugContext(r.Context(), "client went away", "path", clip(r.URL.Path), "err", err)
	} else {
		log.WarnContext(r.Context(), "database unavailable", "method", r.Method, "path", clip(r.URL.Path), "err", err)
	}
	WriteError(w, http.StatusServiceUnavailable, "database unavailable, try again")
}
