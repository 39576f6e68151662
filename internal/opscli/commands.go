package opscli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/rideshare-dbaas/rideshare/orchestrator"
)

func (c *cli) cluster(ctx context.Context) (orchestrator.Cluster, error) {
	var cl orchestrator.Cluster
	err := c.do(ctx, "GET", "/api/v1/cluster", nil, false, &cl)
	return cl, err
}

func (c *cli) statusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Is the DBaaS ready: master, workers by role and state, autoscaler, latest events (exit 6 when not ready)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.cluster(cmd.Context())
			if err != nil {
				return err
			}
			if c.asJSON {
				if err := c.printJSON(cl); err != nil {
					return err
				}
			} else {
				writeStatus(c.out, cl, 5)
			}
			if !cl.Ready {
				return &ExitError{Code: ExitNotReady, Err: fmt.Errorf("not ready: no master is ready")}
			}
			return nil
		},
	}
}

// writeStatus is the human summary (status, and the top of watch).
func writeStatus(w io.Writer, cl orchestrator.Cluster, events int) {
	ready := "NOT READY"
	if cl.Ready {
		ready = "ready"
	}
	mode := "admin needs a token"
	if cl.AdminOpen {
		mode = "dev mode, admin open"
	}
	rabbit := "connected"
	if !cl.RabbitMQ {
		rabbit = "DOWN"
	}
	fmt.Fprintf(w, "DBaaS %s   master %s   RabbitMQ %s   runtime %s   %s\n", ready, orNone(cl.Master), rabbit, cl.Runtime, mode)
	counts := map[string]int{}
	var keys []string
	for _, wk := range cl.Workers {
		k := wk.Role + "/" + wk.State
		if counts[k] == 0 {
			keys = append(keys, k)
		}
		counts[k]++
	}
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d %s", counts[k], k))
	}
	fmt.Fprintf(w, "workers %d: %s\n", len(cl.Workers), strings.Join(parts, ", "))
	a := cl.Autoscaler
	pinned := "autoscaled"
	if a.Pinned != nil {
		pinned = fmt.Sprintf("PINNED at %d", *a.Pinned)
	}
	next := "window starts at the first read"
	if a.NextDecision != nil {
		next = "next decision in " + time.Until(*a.NextDecision).Round(time.Second).String()
	}
	fmt.Fprintf(w, "autoscaler: %d slaves (%s), %d reads this %s window, %s\n", a.Slaves, pinned, a.Reads, a.Window, next)
	if a.Last != nil {
		fmt.Fprintf(w, "last decision: %s\n", a.Last.Why)
	}
	evs := cl.Events
	if len(evs) > events {
		evs = evs[len(evs)-events:]
	}
	if len(evs) > 0 {
		fmt.Fprintln(w, "recent events:")
		for _, e := range evs {
			fmt.Fprintf(w, "  %s  %-8s %s\n", e.Time.Local().Format("15:04:05"), e.Kind, e.Message)
		}
	}
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func (c *cli) workersCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "workers",
		Short: "The workers: id, role, state, pid, applied sequence number, lag behind the master, metrics address, plugins",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var ws []orchestrator.WorkerView
			if err := c.do(cmd.Context(), "GET", "/api/v1/workers", nil, false, &ws); err != nil {
				return err
			}
			if c.asJSON {
				return c.printJSON(ws)
			}
			writeWorkers(c.out, ws)
			return nil
		},
	}
}

func writeWorkers(w io.Writer, ws []orchestrator.WorkerView) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tROLE\tSTATE\tPID\tAPPLIED\tLAG\tEPOCH\tMETRICS\tPLUGINS")
	for _, v := range ws {
		plugins := make([]string, 0, len(v.Plugins))
		for _, p := range v.Plugins {
			plugins = append(plugins, p.Name+"@"+p.Version)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n", v.ID, v.Role, v.State, v.PID, v.Applied, v.Lag, v.Epoch, orNone(v.Metrics), strings.Join(plugins, ","))
	}
	tw.Flush()
}

func (c *cli) crashCmd() *cobra.Command {
	return &cobra.Command{
		Use:       "crash master|slave",
		Short:     "Kill the master, or the slave with the highest pid (admin); prints the killed pid",
		Args:      cobra.MatchAll(cobra.ExactArgs(1), cobra.OnlyValidArgs),
		ValidArgs: []string{"master", "slave"},
		RunE: func(cmd *cobra.Command, args []string) error {
			var pids []int
			if err := c.do(cmd.Context(), "POST", "/api/v1/crash/"+args[0], nil, true, &pids); err != nil {
				return err
			}
			if c.asJSON {
				return c.printJSON(pids)
			}
			fmt.Fprintf(c.out, "killed the %s, pid %v\n", args[0], strings.Trim(fmt.Sprint(pids), "[]"))
			return nil
		},
	}
}

func (c *cli) scaleCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "scale [N|auto]",
		Short: "Show the autoscaler; N pins the slave count (admin), auto hands it back to the autoscaler (admin)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var st orchestrator.ScaleState
			var err error
			switch {
			case len(args) == 0:
				err = c.do(cmd.Context(), "GET", "/api/v1/scale", nil, false, &st)
			case args[0] == "auto":
				err = c.do(cmd.Context(), "DELETE", "/api/v1/scale", nil, true, &st)
			default:
				n, perr := strconv.Atoi(args[0])
				if perr != nil {
					return exitf(ExitUsage, "scale: %q is neither a slave count nor auto", args[0])
				}
				err = c.do(cmd.Context(), "PUT", "/api/v1/scale", map[string]int{"slaves": n}, true, &st)
			}
			if err != nil {
				return err
			}
			if c.asJSON {
				return c.printJSON(st)
			}
			writeScale(c.out, st)
			return nil
		},
	}
}

func writeScale(w io.Writer, st orchestrator.ScaleState) {
	pinned := "no (the autoscaler decides)"
	if st.Pinned != nil {
		pinned = fmt.Sprintf("yes, at %d (rideshare scale auto hands it back)", *st.Pinned)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "slaves kept\t%d\n", st.Slaves)
	fmt.Fprintf(tw, "pinned\t%s\n", pinned)
	fmt.Fprintf(tw, "autoscaler's choice\t%d\n", st.Autoscaled)
	fmt.Fprintf(tw, "window\t%s, %d reads per slave, %d..%d slaves\n", st.Window, st.ReadsPerSlave, st.MinSlaves, st.MaxSlaves)
	fmt.Fprintf(tw, "reads this window\t%d\n", st.Reads)
	if st.Last != nil {
		fmt.Fprintf(tw, "last decision\t%s (%s, %s)\n", st.Last.Why, st.Last.Reason, st.Last.At.Local().Format("15:04:05"))
	}
	tw.Flush()
}

func (c *cli) pluginsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "plugins",
		Short: "The handler plugins the workers have loaded: name, version, SHA-256, on how many workers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var ps []orchestrator.LoadedPlugin
			if err := c.do(cmd.Context(), "GET", "/api/v1/plugins", nil, false, &ps); err != nil {
				return err
			}
			if c.asJSON {
				return c.printJSON(ps)
			}
			tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tVERSION\tSHA256\tWORKERS")
			for _, p := range ps {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", p.Name, p.Version, p.SHA256, len(p.Workers))
			}
			return tw.Flush()
		},
	}
}

func (c *cli) eventsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "events",
		Short: "Recent failovers, respawns, crashes and scaling decisions, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var evs []orchestrator.Event
			if err := c.do(cmd.Context(), "GET", "/api/v1/events", nil, false, &evs); err != nil {
				return err
			}
			if c.asJSON {
				return c.printJSON(evs)
			}
			tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tKIND\tWORKER\tWHAT")
			for _, e := range evs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.Time.Local().Format("15:04:05"), e.Kind, e.Worker, e.Message)
			}
			return tw.Flush()
		},
	}
}

func (c *cli) watchCmd() *cobra.Command {
	var (
		interval time.Duration
		count    int
	)
	cmd := &cobra.Command{
		Use:   "watch",
		Short: "Live view in the terminal: status and workers, refreshed every --interval until Ctrl-C",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if interval < 100*time.Millisecond {
				return exitf(ExitUsage, "--interval must be at least 100ms")
			}
			tty := isTerminal(c.out)
			t := time.NewTicker(interval)
			defer t.Stop()
			for i := 0; count == 0 || i < count; i++ {
				if i > 0 {
					select {
					case <-cmd.Context().Done():
						return nil
					case <-t.C:
					}
				}
				cl, err := c.cluster(cmd.Context())
				if err != nil {
					if cmd.Context().Err() != nil {
						return nil
					}
					// A live view survives an orchestrator restart.
					fmt.Fprintf(c.err, "%s %v\n", time.Now().Format("15:04:05"), err)
					continue
				}
				if c.asJSON {
					if err := writeJSONLine(c.out, cl); err != nil {
						return err
					}
					continue
				}
				if tty {
					fmt.Fprint(c.out, "\033[H\033[2J") // home, clear
				} else if i > 0 {
					fmt.Fprintln(c.out, "----")
				}
				fmt.Fprintf(c.out, "%s  %s  (every %s, Ctrl-C stops)\n\n", time.Now().Format("15:04:05"), c.url, interval)
				writeStatus(c.out, cl, 8)
				fmt.Fprintln(c.out)
				writeWorkers(c.out, cl.Workers)
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&interval, "interval", time.Second, "refresh period")
	cmd.Flags().IntVar(&count, "count", 0, "stop after this many refreshes (0: until Ctrl-C)")
	return cmd
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
