package orchestrator

import (
	"embed"
	"io/fs"
	"net/http"

	"github.com/go-chi/chi/v5"
)

// The live cluster page: plain HTML, CSS and JavaScript embedded in the
// binary (no build tool, nothing fetched from elsewhere). It polls
// /api/v1/cluster and the proxied Traefik API; see ui/app.js.
//
//go:embed ui
var uiFiles embed.FS

func (o *Orchestrator) uiRoutes(r chi.Router) {
	sub, _ := fs.Sub(uiFiles, "ui")
	files := http.StripPrefix("/ui/", http.FileServer(http.FS(sub)))
	r.Get("/", func(w http.ResponseWriter, req *http.Request) {
		http.Redirect(w, req, "/ui/", http.StatusFound)
	})
	r.Get("/ui", func(w http.ResponseWriter, req *http.Request) {
		http.Redirect(w, req, "/ui/", http.StatusMovedPermanently)
	})
	r.Get("/ui/*", func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:")
		files.ServeHTTP(w, req)
	})
}
