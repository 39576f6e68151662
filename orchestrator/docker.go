package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"
	"github.com/rideshare-dbaas/rideshare/internal/images"
)

// Labels on every container the docker runtime creates. The daemon is the
// source of truth: the runtime finds its workers by these labels, never by
// memory alone, and a stack never touches another stack's containers.
const (
	LabelStack  = "rideshare.stack"  // the stack's name
	LabelRole   = "rideshare.role"   // "worker"
	LabelWorker = "rideshare.worker" // the worker's id
	LabelData   = "rideshare.data"   // the host folder of the worker's data
	roleWorker  = "worker"
)

// Where a worker container sees its data and log (bind mounts).
const (
	containerDataDir = images.DataDir
	containerLogFile = "/log/worker.log"
)

// DockerOptions configure the docker runtime.
type DockerOptions struct {
	// Stack names this DBaaS's containers (label rideshare.stack, names
	// rideshare-<Stack>-<worker id>); required.
	Stack string
	// Image is the worker image (default rideshare/worker:dev).
	Image string
	// BuildFrom, when set, is a folder with the worker binary and its
	// plugins/ (bin/): when the daemon lacks Image, it is built from there
	// (package images) instead of failing.
	BuildFrom string
	Args      []string // arguments every worker gets (ZooKeeper, names, ...)
	// Env is added to every worker's environment (the broker URL with the
	// stack's password goes here, never on a command line).
	Env []string
	// DataDir is the host folder of the workers' data: DataDir/<id> is
	// bind-mounted at /data, DataDir/<id>.log at /log/worker.log. When the
	// orchestrator itself runs in a container, mount DataDir at the same
	// path inside it: the daemon resolves bind sources on the host.
	DataDir string
	// PluginDir, when set, is a host folder bind-mounted read-only over the
	// image's /plugins: plugins are then shipped into running workers by
	// updating that folder, as under the process runtime. Default: the
	// plugins baked into the image.
	PluginDir string
	// KeepDead is how many dead workers' data are kept (default
	// DefaultKeepDead).
	KeepDead int
	// Grace is how long Stop waits after SIGTERM before SIGKILL.
	Grace  time.Duration
	Logger *slog.Logger
	// Client talks to the daemon; default client.New(client.FromEnv),
	// which negotiates the API version.
	Client *client.Client
}

// Docker runs workers as containers through the Docker Engine API.
//
// Each worker is a container of the worker image on the host network (it
// reaches RabbitMQ and ZooKeeper on 127.0.0.1 and listens only for
// /metrics, on the worker's default --metrics-listen 127.0.0.1:0: a host
// loopback port the orchestrator reaches at the address the worker
// publishes) and
// in the host's pid namespace, so that the pid the worker registers in
// ZooKeeper, State.Pid and worker/list's pid are one number, the host's;
// a read-only root with a tmpfs /tmp for go-plugin's sockets, no
// capabilities, no new privileges, user 65534 (or the orchestrator's own
// uid when it is not root). Exits come from the daemon's event stream;
// a dead worker's container is removed at once (its data and log live in
// bind-mounted host files, under the workerData rules).
type Docker struct {
	opts  DockerOptions
	log   *slog.Logger
	cli   *client.Client
	data  *workerData
	user  string
	exits chan string

	mu   sync.Mutex
	pids map[string]int // container id -> host pid (fixed while it runs)

	cancel context.CancelFunc
	done   chan struct{}
}

var (
	_ Runtime = (*Docker)(nil)
	_ Reviver = (*Docker)(nil)
)

var validStack = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`)

// DockerProbe is the docker case of an automatic runtime choice: the
// daemon that client.FromEnv points at answers a ping.
func DockerProbe(ctx context.Context) error {
	cli, err := client.New(client.FromEnv)
	if err != nil {
		return err
	}
	defer cli.Close()
	_, err = cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true})
	return err
}

// NewDocker connects to the daemon, makes sure the worker image is there
// (building it when BuildFrom allows), takes over the stack's running
// worker containers (an earlier orchestrator's) and removes its dead ones,
// then follows the daemon's events.
func NewDocker(ctx context.Context, opts DockerOptions) (*Docker, error) {
	if !validStack.MatchString(opts.Stack) {
		return nil, fmt.Errorf("docker runtime: stack name %q: want letters, digits, '_', '.', '-'", opts.Stack)
	}
	if opts.Image == "" {
		opts.Image = images.Ref("worker", images.DefaultTag)
	}
	if opts.Grace == 0 {
		opts.Grace = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	cli := opts.Client
	if cli == nil {
		var err error
		if cli, err = client.New(client.FromEnv); err != nil {
			return nil, fmt.Errorf("docker runtime: %w", err)
		}
	}
	d := &Docker{opts: opts, log: opts.Logger, cli: cli, exits: make(chan string, 64), pids: map[string]int{}}
	fail := func(err error) (*Docker, error) {
		if opts.Client == nil {
			cli.Close()
		}
		return nil, fmt.Errorf("docker runtime: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err := cli.Ping(pctx, client.PingOptions{NegotiateAPIVersion: true})
	cancel()
	if err != nil {
		return fail(fmt.Errorf("the Docker daemon does not answer: %w", err))
	}
	// Workers run as 65534 when the orchestrator can give them their
	// folders (root); otherwise as the orchestrator's own user, whose
	// folders they are.
	owner := -1
	d.user = fmt.Sprintf("%d:%d", os.Geteuid(), os.Getegid())
	if os.Geteuid() == 0 {
		owner, d.user = 65534, images.User
	}
	if d.data, err = newWorkerData(opts.DataDir, opts.KeepDead, owner, d.log); err != nil {
		return fail(err)
	}
	if err := d.ensureImage(ctx); err != nil {
		return fail(err)
	}
	// Events from now on: nothing that happens after the listing below is
	// missed.
	since := time.Now()
	if err := d.adopt(ctx); err != nil {
		return fail(err)
	}
	wctx, wcancel := context.WithCancel(context.Background())
	d.cancel, d.done = wcancel, make(chan struct{})
	go d.watch(wctx, since)
	d.log.Info("docker runtime ready", "stack", opts.Stack, "image", opts.Image, "data", d.data.root,
		"plugins", cmpOr(opts.PluginDir, "the image's"), "user", d.user, "api", cli.ClientVersion())
	return d, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// ensureImage builds the worker image when the daemon does not have it
// and BuildFrom says where its binaries are.
func (d *Docker) ensureImage(ctx context.Context) error {
	ok, err := images.Exists(ctx, d.cli, d.opts.Image)
	if err != nil || ok {
		return err
	}
	repo, tag, _ := strings.Cut(d.opts.Image, ":")
	if d.opts.BuildFrom == "" || repo != images.Repo+"/worker" || tag == "" {
		return fmt.Errorf("the daemon has no image %s (run make images)", d.opts.Image)
	}
	d.log.Info("worker image missing; building it", "image", d.opts.Image, "from", d.opts.BuildFrom)
	bctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	_, err = images.Build(bctx, d.cli, images.Spec{Component: "worker", BinDir: d.opts.BuildFrom, Tags: []string{tag}, Version: tag}, d.log)
	return err
}

// Name is "docker".
func (d *Docker) Name() string { return RuntimeDocker }

func (d *Docker) containerName(id string) string { return "rideshare-" + d.opts.Stack + "-" + id }

func (d *Docker) filters() client.Filters {
	return client.Filters{}.Add("label", LabelStack+"="+d.opts.Stack, LabelRole+"="+roleWorker)
}

// adopt takes over the stack's running worker containers and removes the
// dead ones.
func (d *Docker) adopt(ctx context.Context) error {
	res, err := d.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: d.filters()})
	if err != nil {
		return fmt.Errorf("list containers: %w", err)
	}
	for _, c := range res.Items {
		id := c.Labels[LabelWorker]
		if c.State == container.StateRunning {
			pid, err := d.pid(ctx, c.ID)
			if err == nil && pid > 0 {
				d.log.Info("adopted running worker", "id", id, "pid", pid, "container", short(c.ID), "image", c.Image)
				continue
			}
		}
		d.log.Info("removing a dead worker's container", "id", id, "container", short(c.ID), "state", c.State)
		d.remove(ctx, c.ID)
	}
	return nil
}

func short(id string) string { return id[:min(12, len(id))] }

// pid is container cid's main process as the host sees it (cached: it
// does not change while the container runs).
func (d *Docker) pid(ctx context.Context, cid string) (int, error) {
	d.mu.Lock()
	pid, ok := d.pids[cid]
	d.mu.Unlock()
	if ok {
		return pid, nil
	}
	in, err := d.cli.ContainerInspect(ctx, cid, client.ContainerInspectOptions{})
	if err != nil {
		return 0, err
	}
	if in.Container.State == nil || !in.Container.State.Running {
		return 0, nil
	}
	pid = in.Container.State.Pid
	d.mu.Lock()
	d.pids[cid] = pid
	d.mu.Unlock()
	return pid, nil
}

// remove force-removes container cid (by id, never by name: a revived
// worker's new container has the old one's name).
func (d *Docker) remove(ctx context.Context, cid string) {
	d.mu.Lock()
	delete(d.pids, cid)
	d.mu.Unlock()
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	_, err := d.cli.ContainerRemove(rctx, cid, client.ContainerRemoveOptions{Force: true})
	if err != nil && !cerrdefs.IsNotFound(err) && !cerrdefs.IsConflict(err) {
		d.log.Warn("removing a worker container", "container", short(cid), "err", err)
	}
}

// watch follows the daemon's die events for the stack's workers until ctx
// ends, subscribing again (from the last event seen) when the stream
// breaks, and then also reaping what died meanwhile.
func (d *Docker) watch(ctx context.Context, since time.Time) {
	defer close(d.done)
	f := d.filters().Add("type", "container").Add("event", string(events.ActionDie))
	backoff := 100 * time.Millisecond
	for {
		res := d.cli.Events(ctx, client.EventsListOptions{
			Since:   fmt.Sprintf("%d.%09d", since.Unix(), since.Nanosecond()),
			Filters: f,
		})
		var err error
	stream:
		for {
			select {
			case m := <-res.Messages:
				since = time.Unix(0, m.TimeNano)
				backoff = 100 * time.Millisecond
				d.onDie(ctx, m)
			case err = <-res.Err:
				break stream
			}
		}
		if ctx.Err() != nil {
			return
		}
		d.log.Warn("docker event stream broke; subscribing again", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
		d.reapDead(ctx)
	}
}

// reapDead handles every stopped worker container of the stack as a death.
func (d *Docker) reapDead(ctx context.Context) {
	res, err := d.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: d.filters().Clone().Add("status", "exited", "dead")})
	if err != nil {
		return
	}
	for _, c := range res.Items {
		d.onDie(ctx, events.Message{Actor: events.Actor{ID: c.ID, Attributes: c.Labels}})
	}
}

// onDie logs a worker's end, removes its container and reports the exit.
func (d *Docker) onDie(ctx context.Context, m events.Message) {
	id := m.Actor.Attributes[LabelWorker]
	d.mu.Lock()
	pid := d.pids[m.Actor.ID]
	d.mu.Unlock()
	code := m.Actor.Attributes["exitCode"]
	d.log.Info("worker exited", "id", id, "pid", pid, "container", short(m.Actor.ID), "status", exitText(code))
	if n, err := strconv.Atoi(code); err == nil && n > 0 && n < 128 {
		// What it said before failing (a bad flag is printed before its
		// log file opens): the container's log goes with the container.
		d.log.Warn("worker failed", "id", id, "output", d.logTail(ctx, m.Actor.ID, 10))
	}
	d.remove(ctx, m.Actor.ID)
	select {
	case d.exits <- id:
	default: // the reconciler also polls List
	}
}

// logTail is the end of container cid's output.
func (d *Docker) logTail(ctx context.Context, cid string, lines int) string {
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rc, err := d.cli.ContainerLogs(lctx, cid, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Tail: strconv.Itoa(lines)})
	if err != nil {
		return "(no output: " + err.Error() + ")"
	}
	defer rc.Close()
	var out strings.Builder
	_, _ = stdcopy.StdCopy(&out, &out, io.LimitReader(rc, 64<<10))
	return strings.TrimSpace(out.String())
}

// exitText says how a container's process ended, as os/exec does for a
// process ("exit status 3", "signal: killed"): the daemon reports a
// signal n as exit code 128+n.
func exitText(code string) string {
	n, err := strconv.Atoi(code)
	switch {
	case err != nil:
		return "exit code " + code
	case n > 128 && n < 128+65:
		return "signal: " + syscall.Signal(n-128).String()
	default:
		return "exit status " + code
	}
}

// find returns worker id's container, running or not.
func (d *Docker) find(ctx context.Context, id string) (container.InspectResponse, error) {
	in, err := d.cli.ContainerInspect(ctx, d.containerName(id), client.ContainerInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return container.InspectResponse{}, fmt.Errorf("%w: %s", ErrNoSuchWorker, id)
	}
	if err != nil {
		return container.InspectResponse{}, fmt.Errorf("inspect worker %s: %w", id, err)
	}
	if in.Container.Config == nil || in.Container.Config.Labels[LabelStack] != d.opts.Stack {
		return container.InspectResponse{}, fmt.Errorf("%w: %s (container %s is not this stack's)", ErrNoSuchWorker, id, d.containerName(id))
	}
	return in.Container, nil
}

// Start creates and starts worker id's container.
func (d *Docker) Start(ctx context.Context, id string) (Instance, error) {
	if err := validID(id); err != nil {
		return Instance{}, err
	}
	began := time.Now()
	// A container left with this name (a dead worker revived on its data
	// before its die event was handled) goes first.
	if old, err := d.find(ctx, id); err == nil {
		if old.State != nil && old.State.Running {
			return Instance{}, fmt.Errorf("start worker %s: it is already running", id)
		}
		d.remove(ctx, old.ID)
	}
	live, err := d.List(ctx)
	if err != nil {
		return Instance{}, err
	}
	keep := map[string]bool{id: true}
	for _, in := range live {
		keep[in.ID] = true
	}
	d.data.prune(keep)
	if err := d.data.prepare(id); err != nil {
		return Instance{}, err
	}
	args := append(append([]string{}, d.opts.Args...),
		"--id", id, "--data-dir", containerDataDir, "--log-file", containerLogFile)
	mounts := []mount.Mount{
		{Type: mount.TypeBind, Source: d.data.dir(id), Target: containerDataDir},
		{Type: mount.TypeBind, Source: d.data.logPath(id), Target: containerLogFile},
	}
	if d.opts.PluginDir != "" {
		mounts = append(mounts, mount.Mount{Type: mount.TypeBind, Source: d.opts.PluginDir, Target: images.PluginDir, ReadOnly: true})
		args = append(args, "--plugin-dir", images.PluginDir)
	}
	created, err := d.cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: d.containerName(id),
		Config: &container.Config{
			Image: d.opts.Image,
			User:  d.user,
			Cmd:   args,
			Env:   d.opts.Env,
			Labels: map[string]string{
				LabelStack: d.opts.Stack, LabelRole: roleWorker, LabelWorker: id, LabelData: d.data.dir(id),
			},
		},
		HostConfig: &container.HostConfig{
			NetworkMode:    "host",
			PidMode:        "host",
			Mounts:         mounts,
			ReadonlyRootfs: true,
			Tmpfs:          map[string]string{images.TmpDir: "rw,nosuid,nodev,size=64m,mode=1777"},
			CapDrop:        []string{"ALL"},
			SecurityOpt:    []string{"no-new-privileges"},
			LogConfig:      container.LogConfig{Type: "json-file", Config: map[string]string{"max-size": "1m", "max-file": "1"}},
		},
	})
	if err != nil {
		return Instance{}, fmt.Errorf("create worker %s: %w", id, err)
	}
	if _, err := d.cli.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		d.remove(ctx, created.ID)
		return Instance{}, fmt.Errorf("start worker %s: %w", id, err)
	}
	pid, err := d.pid(ctx, created.ID)
	if err != nil || pid == 0 {
		// It died at once: its die event reports the exit.
		return Instance{}, fmt.Errorf("start worker %s: not running right after its start (%v); see %s", id, err, d.data.logPath(id))
	}
	d.log.Info("worker started", "id", id, "pid", pid, "container", short(created.ID), "took", time.Since(began).Round(time.Millisecond).String())
	return Instance{ID: id, PID: pid}, nil
}

// Kill sends SIGKILL to worker id's container and waits until it stopped.
func (d *Docker) Kill(ctx context.Context, id string) error {
	c, err := d.find(ctx, id)
	if err != nil {
		return err
	}
	if c.State == nil || !c.State.Running {
		return fmt.Errorf("%w: %s (not running)", ErrNoSuchWorker, id)
	}
	if _, err := d.cli.ContainerKill(ctx, c.ID, client.ContainerKillOptions{Signal: "SIGKILL"}); err != nil && !cerrdefs.IsConflict(err) {
		return fmt.Errorf("kill worker %s: %w", id, err)
	}
	return d.waitStopped(ctx, c.ID)
}

// waitStopped waits until container cid is not running (its process reaped).
func (d *Docker) waitStopped(ctx context.Context, cid string) error {
	w := d.cli.ContainerWait(ctx, cid, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	select {
	case <-w.Result:
		return nil
	case err := <-w.Error:
		if cerrdefs.IsNotFound(err) {
			return nil // already removed
		}
		return fmt.Errorf("wait for container %s: %w", short(cid), err)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stop removes worker id on purpose (scale-in): SIGTERM, up to Grace to
// finish what it holds, SIGKILL; then its container and its data go.
func (d *Docker) Stop(ctx context.Context, id string) error {
	c, err := d.find(ctx, id)
	if err != nil {
		return err
	}
	if err := d.stop(ctx, c.ID); err != nil {
		return fmt.Errorf("stop worker %s: %w", id, err)
	}
	d.remove(ctx, c.ID)
	return d.data.remove(id)
}

func (d *Docker) stop(ctx context.Context, cid string) error {
	grace := int(d.opts.Grace.Round(time.Second) / time.Second)
	if _, err := d.cli.ContainerStop(ctx, cid, client.ContainerStopOptions{Timeout: &grace}); err != nil && !cerrdefs.IsNotFound(err) {
		return err
	}
	return d.waitStopped(ctx, cid)
}

// List returns the stack's running worker containers, from the daemon.
func (d *Docker) List(ctx context.Context) ([]Instance, error) {
	res, err := d.cli.ContainerList(ctx, client.ContainerListOptions{Filters: d.filters().Clone().Add("status", "running")})
	if err != nil {
		return nil, fmt.Errorf("list worker containers: %w", err)
	}
	out := make([]Instance, 0, len(res.Items))
	for _, c := range res.Items {
		pid, err := d.pid(ctx, c.ID)
		if err != nil || pid == 0 {
			continue // gone since the listing
		}
		out = append(out, Instance{ID: c.Labels[LabelWorker], PID: pid})
	}
	return out, nil
}

// CanRevive reports whether worker id is not running and its database is
// on disk, so Start(id) would run it on its own data.
func (d *Docker) CanRevive(id string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := d.find(ctx, id)
	switch {
	case err == nil && c.State != nil && c.State.Running:
		return false
	case err != nil && !errors.Is(err, ErrNoSuchWorker):
		return false // cannot tell: do not start a second copy
	}
	return d.data.hasDB(id)
}

// Exits reports workers whose container died.
func (d *Docker) Exits() <-chan string { return d.exits }

// Close stops following events; with killAll it stops every worker of the
// stack (in parallel, gracefully) and removes the containers. Their data
// stays.
func (d *Docker) Close(killAll bool) error {
	d.cancel()
	<-d.done
	var errs []error
	if killAll {
		ctx, cancel := context.WithTimeout(context.Background(), d.opts.Grace+30*time.Second)
		defer cancel()
		res, err := d.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: d.filters()})
		if err != nil {
			errs = append(errs, fmt.Errorf("list worker containers: %w", err))
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		for _, c := range res.Items {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := d.stop(ctx, c.ID); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("stop worker %s: %w", c.Labels[LabelWorker], err))
					mu.Unlock()
				}
				d.remove(ctx, c.ID)
				d.log.Info("worker stopped", "id", c.Labels[LabelWorker], "container", short(c.ID))
			}()
		}
		wg.Wait()
	}
	if d.opts.Client == nil {
		errs = append(errs, d.cli.Close())
	}
	return errors.Join(errs...)
}
