// Command traefik-render writes Traefik's file-provider configuration from
// the rule table (package traefik), or prints a route's Nomad service tags.
//
//	traefik-render LB_PORT API_PORT USERS_URL RIDES_URL STATE_DIR
//	traefik-render -nomad-tags NAME
//
// The first form writes STATE_DIR/traefik.yml and STATE_DIR/dynamic/routes.yml
// and prints the former's path. A URL argument may list several servers,
// comma-separated; a routes.tsv row NAME takes its servers from the
// environment variable NAME_URL, which USERS_URL and RIDES_URL override.
// The second prints the HCL list of tags that jobs/NAME.nomad.hcl carries.
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/rideshare-dbaas/rideshare/traefik"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	fs := flag.NewFlagSet("traefik-render", flag.ContinueOnError)
	tags := fs.String("nomad-tags", "", "print the Nomad service tags of route `NAME` as an HCL list")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: traefik-render LB_PORT API_PORT USERS_URL RIDES_URL STATE_DIR\n       traefik-render -nomad-tags NAME")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	routes, err := traefik.Routes()
	if err != nil {
		fmt.Fprintln(os.Stderr, "traefik-render:", err)
		return 1
	}
	if *tags != "" {
		for _, r := range routes {
			if r.Name == *tags {
				fmt.Println(r.NomadTagsHCL(""))
				return 0
			}
		}
		fmt.Fprintf(os.Stderr, "traefik-render: no route %q in routes.tsv\n", *tags)
		return 2
	}
	if fs.NArg() != 5 {
		fs.Usage()
		return 2
	}
	a := fs.Args()
	ports := make([]int, 2)
	for i, s := range a[:2] {
		if ports[i], err = strconv.Atoi(s); err != nil {
			fmt.Fprintf(os.Stderr, "traefik-render: bad port %q\n", s)
			return 2
		}
	}
	servers := map[string][]string{}
	for _, r := range routes {
		if v := os.Getenv(r.URLVar()); v != "" {
			servers[r.Name] = strings.Split(v, ",")
		}
	}
	servers["users"], servers["rides"] = strings.Split(a[2], ","), strings.Split(a[3], ",")
	path, err := traefik.Render(a[4], ports[0], ports[1], servers)
	if err != nil {
		fmt.Fprintln(os.Stderr, "traefik-render:", err)
		return 2
	}
	fmt.Println(path)
	return 0
}
