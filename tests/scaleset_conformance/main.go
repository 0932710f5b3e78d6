// Command scaleset-conformance runs GitHub's own scale-set client (github.com/actions/scaleset, its Client
// and its listener package) against a GitHub (here: our emulator) the way an autoscaler does:
//
//  1. creates a runner scale set (then reads it back by id, patches it, and reads it by name);
//  2. opens a message session and runs listener.Listener with a Scaler that starts one stand-in runner
//     process per assigned job (desired = min(max, min + totalAssignedJobs)) from a JIT config it
//     generates, each in its own copy of the runner folder, with ACTIONS_RUNNER_INPUT_JITCONFIG as the
//     real runner takes it;
//  3. records JobStarted / JobCompleted and stops once --jobs jobs have completed;
//  4. closes the session, deletes the scale set and checks it is gone.
//
// It prints one JSON summary on stdout and exits 0 only when every step succeeded and every job completed
// with result "succeeded". Any failure: exit 1 and a message on stderr naming the step (the summary is
// still printed, with "ok": false and "error"). Exit 2: bad command line. Bounded by --timeout.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/actions/scaleset"
	"github.com/actions/scaleset/listener"
)

type options struct {
	url          string
	token        string
	appClientID  string
	appInstall   int64
	appKeyFile   string
	checkBusy    bool
	name         string
	labels       string
	runnerGroup  string
	runnerCmd    string
	workDir      string
	jobs         int
	minRunners   int
	maxRunners   int
	timeout      time.Duration
	idleGrace    time.Duration
	logLevel     string
	keepWorkDirs bool
}

func parseFlags(args []string) (*options, error) {
	o := &options{}
	fl := flag.NewFlagSet("scaleset-conformance", flag.ContinueOnError)
	fl.StringVar(&o.url, "url", "", "REQUIRED: GitHub config URL of the scope (org, org/repo or enterprises/E), e.g. http://127.0.0.1:8080/acme")
	fl.StringVar(&o.token, "token", "", "personal access token (default: $GHR_CONFORMANCE_TOKEN; prefer the variable, a flag shows in ps)")
	fl.StringVar(&o.appClientID, "app-client-id", "", "GitHub App client id (or app id): authenticate as the App instead of a PAT")
	fl.Int64Var(&o.appInstall, "app-installation-id", 0, "GitHub App installation id (with --app-client-id)")
	fl.StringVar(&o.appKeyFile, "app-private-key-file", "", "GitHub App private key, PEM file (with --app-client-id)")
	fl.BoolVar(&o.checkBusy, "check-busy-delete", false, "on the first JobStarted, delete that runner's agent and expect GitHub's refusal (JobStillRunning); needs jobs that run a few seconds")
	fl.StringVar(&o.name, "name", "", "REQUIRED: scale set name")
	fl.StringVar(&o.labels, "labels", "", "comma-separated labels (default: the scale set name)")
	fl.StringVar(&o.runnerGroup, "runner-group", scaleset.DefaultRunnerGroup, "runner group; \"default\" is id 1 without a lookup, as GitHub's example does")
	fl.StringVar(&o.runnerCmd, "runner-cmd", "", "REQUIRED: the runner's run.sh; its folder is copied once per runner and run.sh started there with ACTIONS_RUNNER_INPUT_JITCONFIG")
	fl.StringVar(&o.workDir, "work-dir", "", "where the per-runner copies go (default: a new temporary folder, removed at the end)")
	fl.IntVar(&o.jobs, "jobs", 1, "stop once this many jobs have completed (not counting canceled re-assignments)")
	fl.IntVar(&o.minRunners, "min-runners", 0, "minRunners of the scaler")
	fl.IntVar(&o.maxRunners, "max-runners", 4, "maxRunners of the scaler (the capacity the listener reports)")
	fl.DurationVar(&o.timeout, "timeout", 3*time.Minute, "bound on the whole run, clean-up excluded (which has its own 30 s)")
	fl.DurationVar(&o.idleGrace, "idle-exit-grace", 20*time.Second, "a runner process that exited this long ago without JobStarted/JobCompleted fails the run")
	fl.StringVar(&o.logLevel, "log-level", "info", "stderr log level: debug, info, warn, error")
	fl.BoolVar(&o.keepWorkDirs, "keep-work-dirs", false, "keep the runner folders (their logs) afterwards")
	if err := fl.Parse(args); err != nil {
		return nil, err
	}
	if o.token == "" {
		o.token = os.Getenv("GHR_CONFORMANCE_TOKEN")
	}
	var missing []string
	required := map[string]string{"url": o.url, "name": o.name, "runner-cmd": o.runnerCmd}
	if o.appClientID != "" {
		required["app-private-key-file"] = o.appKeyFile
		if o.appInstall == 0 {
			missing = append(missing, "--app-installation-id")
		}
	} else {
		required["token (or $GHR_CONFORMANCE_TOKEN, or --app-client-id)"] = o.token
	}
	for flagName, v := range required {
		if v == "" {
			missing = append(missing, "--"+flagName)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, fmt.Errorf("missing %s", strings.Join(missing, ", "))
	}
	if o.jobs < 1 || o.maxRunners < 1 || o.minRunners < 0 || o.minRunners > o.maxRunners {
		return nil, fmt.Errorf("need --jobs >= 1, --max-runners >= 1 and 0 <= --min-runners <= --max-runners")
	}
	if st, err := os.Stat(o.runnerCmd); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		return nil, fmt.Errorf("--runner-cmd %q is not an executable file", o.runnerCmd)
	}
	return o, nil
}

// ---------------------------------------------------------------- summary

type jobRecord struct {
	RunnerRequestID int64  `json:"runnerRequestId"`
	JobID           string `json:"jobId"`
	RunnerID        int    `json:"runnerId"`
	RunnerName      string `json:"runnerName"`
	Result          string `json:"result,omitempty"`
	RepositoryName  string `json:"repositoryName"`
	OwnerName       string `json:"ownerName"`
}

type runnerRecord struct {
	Name     string `json:"name"`
	ID       int    `json:"id"`
	State    string `json:"state"` // idle, busy, done
	Exited   bool   `json:"exited"`
	ExitCode int    `json:"exitCode"`
	Dir      string `json:"dir,omitempty"`
}

type summary struct {
	OK               bool                              `json:"ok"`
	Error            string                            `json:"error,omitempty"`
	Step             string                            `json:"step,omitempty"`
	ScaleSetID       int                               `json:"scaleSetId"`
	ScaleSetName     string                            `json:"scaleSetName"`
	Labels           []string                          `json:"labels"`
	SessionID        string                            `json:"sessionId,omitempty"`
	SessionOwner     string                            `json:"sessionOwner,omitempty"`
	Checks           []string                          `json:"checks"`
	Started          []jobRecord                       `json:"started"`
	Completed        []jobRecord                       `json:"completed"`
	Canceled         []jobRecord                       `json:"canceled"`
	Runners          []runnerRecord                    `json:"runners"`
	MaxConcurrent    int                               `json:"maxConcurrentRunners"`
	DesiredCounts    []int                             `json:"desiredCounts"`
	LastStatistics   *scaleset.RunnerScaleSetStatistic `json:"lastStatistics,omitempty"`
	MaxAssignedJobs  int                               `json:"maxAssignedJobs"`   // highest statistics.totalAssignedJobs seen
	Messages         int                               `json:"statisticsUpdates"` // session statistics, then one per message
	SessionClosed    bool                              `json:"sessionClosed"`
	ScaleSetDeleted  bool                              `json:"scaleSetDeleted"`
	ScaleSetGone     bool                              `json:"scaleSetGoneAfterDelete"`
	ElapsedSeconds   float64                           `json:"elapsedSeconds"`
	ClientModVersion string                            `json:"clientModuleVersion"`
}

// ---------------------------------------------------------------- scaler

type runner struct {
	rec     runnerRecord
	cmd     *exec.Cmd
	exited  chan struct{}
	logPath string
}

type scaler struct {
	o         *options
	client    *scaleset.Client
	scaleSet  int
	logger    *slog.Logger
	workDir   string
	runnerSrc string

	mu        sync.Mutex
	runners   map[string]*runner
	order     []string
	sum       *summary
	completed int
	done      chan struct{} // closed once --jobs jobs completed
	failed    chan error    // first fatal error found by the scaler's own watchers
	seq       int
	shutOnce  sync.Once

	dupChecked  bool
	busyChecked bool
}

func newScaler(o *options, c *scaleset.Client, scaleSetID int, logger *slog.Logger, workDir string, sum *summary) *scaler {
	return &scaler{
		o: o, client: c, scaleSet: scaleSetID, logger: logger, workDir: workDir,
		runnerSrc: filepath.Dir(o.runnerCmd),
		runners:   map[string]*runner{}, sum: sum,
		done: make(chan struct{}), failed: make(chan error, 1),
	}
}

var _ listener.Scaler = (*scaler)(nil)
var _ listener.MetricsRecorder = (*scaler)(nil)

// liveLocked counts the runners that hold a slot: every runner not retired by its JobCompleted.
func (s *scaler) liveLocked() int {
	n := 0
	for _, r := range s.runners {
		if r.rec.State != "done" {
			n++
		}
	}
	return n
}

func (s *scaler) HandleDesiredRunnerCount(ctx context.Context, count int) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	target := min(s.o.maxRunners, s.o.minRunners+count)
	current := s.liveLocked()
	s.sum.DesiredCounts = append(s.sum.DesiredCounts, target)
	if target <= current {
		// Scale-down is never forced: JobCompleted retires runners, as in GitHub's example.
		return current, nil
	}
	s.logger.Info("scaling up", "current", current, "target", target, "totalAssignedJobs", count)
	for range target - current {
		if err := s.startRunnerLocked(ctx); err != nil {
			return s.liveLocked(), err
		}
	}
	if live := s.liveLocked(); live > s.sum.MaxConcurrent {
		s.sum.MaxConcurrent = live
	}
	return s.liveLocked(), nil
}

func (s *scaler) startRunnerLocked(ctx context.Context) error {
	s.seq++
	name := fmt.Sprintf("%s-r%d-%d", s.o.name, s.seq, time.Now().UnixMilli()%100000)
	jit, err := s.client.GenerateJitRunnerConfig(ctx, &scaleset.RunnerScaleSetJitRunnerSetting{Name: name, WorkFolder: "_work"}, s.scaleSet)
	if err != nil {
		return fmt.Errorf("generatejitconfig for runner %s: %w", name, err)
	}
	if jit.Runner == nil || jit.Runner.Name != name || jit.EncodedJITConfig == "" {
		return fmt.Errorf("generatejitconfig for runner %s: answer lacks runner.name=%q or encodedJITConfig (got %+v)", name, name, jit.Runner)
	}
	if jit.Runner.RunnerScaleSetID != 0 && jit.Runner.RunnerScaleSetID != s.scaleSet {
		return fmt.Errorf("generatejitconfig for runner %s: runner.runnerScaleSetId=%d, want %d", name, jit.Runner.RunnerScaleSetID, s.scaleSet)
	}
	// Agents by id and by name (the Actions service's view of the new runner).
	ref, err := s.client.GetRunner(ctx, jit.Runner.ID)
	if err != nil {
		return fmt.Errorf("get agent %d (runner %s): %w", jit.Runner.ID, name, err)
	}
	if ref == nil || ref.Name != name {
		return fmt.Errorf("get agent %d: name %q, want %q", jit.Runner.ID, refName(ref), name)
	}
	byName, err := s.client.GetRunnerByName(ctx, name)
	if err != nil {
		return fmt.Errorf("get agent by name %s: %w", name, err)
	}
	if byName == nil || byName.ID != jit.Runner.ID {
		return fmt.Errorf("get agent by name %s: got %+v, want id %d", name, byName, jit.Runner.ID)
	}

	dir := filepath.Join(s.workDir, name)
	if err := copyTree(s.runnerSrc, dir); err != nil {
		return fmt.Errorf("copy the runner folder %s to %s: %w", s.runnerSrc, dir, err)
	}
	logPath := filepath.Join(dir, "runner.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("create %s: %w", logPath, err)
	}
	cmd := exec.Command(filepath.Join(dir, filepath.Base(s.o.runnerCmd)))
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(envWithout(os.Environ(), "ACTIONS_RUNNER_INPUT_"), "ACTIONS_RUNNER_INPUT_JITCONFIG="+jit.EncodedJITConfig)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start runner %s (%s): %w", name, cmd.Path, err)
	}
	r := &runner{rec: runnerRecord{Name: name, ID: jit.Runner.ID, State: "idle", Dir: dir}, cmd: cmd, exited: make(chan struct{}), logPath: logPath}
	if !s.dupChecked {
		// A second JIT config under a taken name: GitHub refuses it (AgentExists), the client maps it to RunnerExistsError.
		s.dupChecked = true
		_, err := s.client.GenerateJitRunnerConfig(ctx, &scaleset.RunnerScaleSetJitRunnerSetting{Name: name, WorkFolder: "_work"}, s.scaleSet)
		if !errors.Is(err, scaleset.RunnerExistsError) {
			s.runners[name] = r
			s.order = append(s.order, name)
			return fmt.Errorf("generatejitconfig under the taken name %s: want the client's RunnerExistsError (typeName *AgentExistsException), got %v", name, err)
		}
		s.sum.Checks = append(s.sum.Checks, "generatejitconfig with a taken name: RunnerExistsError")
	}
	s.runners[name] = r
	s.order = append(s.order, name)
	s.logger.Info("runner started", "name", name, "id", jit.Runner.ID, "pid", cmd.Process.Pid)
	go func() {
		err := cmd.Wait()
		logf.Close()
		s.mu.Lock()
		r.rec.Exited = true
		r.rec.ExitCode = cmd.ProcessState.ExitCode()
		state := r.rec.State
		s.mu.Unlock()
		close(r.exited)
		s.logger.Info("runner process exited", "name", name, "exitCode", r.rec.ExitCode, "state", state, "err", err)
		if state == "idle" {
			go s.watchIdleExit(r)
		}
	}()
	return nil
}

// watchIdleExit fails the run when a runner exited and, after the grace (GitHub's messages may lag behind
// the runner), no JobStarted or JobCompleted ever named it: its JIT config or job was not honoured.
func (s *scaler) watchIdleExit(r *runner) {
	select {
	case <-time.After(s.o.idleGrace):
	case <-s.done:
		return
	}
	s.mu.Lock()
	state := r.rec.State
	s.mu.Unlock()
	if state != "idle" {
		return
	}
	s.fail(fmt.Errorf("runner %s (agent %d) exited with code %d and no JobStarted/JobCompleted named it within %s; its log ends:\n%s",
		r.rec.Name, r.rec.ID, r.rec.ExitCode, s.o.idleGrace, tail(r.logPath, 2000)))
}

func (s *scaler) fail(err error) {
	select {
	case s.failed <- err:
	default:
	}
}

func (s *scaler) HandleJobStarted(ctx context.Context, j *scaleset.JobStarted) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := jobRecord{RunnerRequestID: j.RunnerRequestID, JobID: j.JobID, RunnerID: j.RunnerID, RunnerName: j.RunnerName,
		RepositoryName: j.RepositoryName, OwnerName: j.OwnerName}
	s.sum.Started = append(s.sum.Started, rec)
	s.logger.Info("JobStarted", "runnerRequestId", j.RunnerRequestID, "jobId", j.JobID, "runnerName", j.RunnerName, "runnerId", j.RunnerID)
	r, ok := s.runners[j.RunnerName]
	if !ok {
		return fmt.Errorf("JobStarted names runner %q (id %d), which this scaler never started (started: %v)", j.RunnerName, j.RunnerID, s.order)
	}
	if j.RunnerID != r.rec.ID {
		return fmt.Errorf("JobStarted for runner %q carries runnerId %d, generatejitconfig gave %d", j.RunnerName, j.RunnerID, r.rec.ID)
	}
	if r.rec.State == "idle" {
		r.rec.State = "busy"
	}
	if s.o.checkBusy && !s.busyChecked {
		s.busyChecked = true
		return s.checkBusyDelete(ctx, r)
	}
	return nil
}

// checkBusyDelete deletes the agent of a runner that is running its job: GitHub refuses (JobStillRunningException),
// which the client maps to JobStillRunningError. Called with s.mu held.
func (s *scaler) checkBusyDelete(ctx context.Context, r *runner) error {
	select {
	case <-r.exited:
		s.sum.Checks = append(s.sum.Checks, "busy agent delete: not checked, the runner had already finished")
		return nil
	default:
	}
	err := s.client.RemoveRunner(ctx, int64(r.rec.ID))
	switch {
	case errors.Is(err, scaleset.JobStillRunningError):
		s.sum.Checks = append(s.sum.Checks, "busy agent delete: JobStillRunningError")
		return nil
	case err == nil:
		select {
		case <-r.exited:
			s.sum.Checks = append(s.sum.Checks, "busy agent delete: not checked, the runner finished meanwhile")
			return nil
		default:
		}
		return fmt.Errorf("DELETE agent %d while runner %s runs its job: answered 204, GitHub refuses with JobStillRunningException", r.rec.ID, r.rec.Name)
	default:
		return fmt.Errorf("DELETE agent %d while runner %s runs its job: want the client's JobStillRunningError, got %w", r.rec.ID, r.rec.Name, err)
	}
}

func (s *scaler) HandleJobCompleted(ctx context.Context, j *scaleset.JobCompleted) error {
	s.mu.Lock()
	rec := jobRecord{RunnerRequestID: j.RunnerRequestID, JobID: j.JobID, RunnerID: j.RunnerID, RunnerName: j.RunnerName,
		Result: j.Result, RepositoryName: j.RepositoryName, OwnerName: j.OwnerName}
	s.logger.Info("JobCompleted", "runnerRequestId", j.RunnerRequestID, "jobId", j.JobID, "runnerName", j.RunnerName, "result", j.Result)
	if strings.EqualFold(j.Result, "canceled") && j.RunnerName == "" {
		// A job assigned to the scale set but not acquired in time: GitHub re-assigns it.
		s.sum.Canceled = append(s.sum.Canceled, rec)
		s.mu.Unlock()
		return nil
	}
	s.sum.Completed = append(s.sum.Completed, rec)
	r, ok := s.runners[j.RunnerName]
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("JobCompleted names runner %q (id %d), which this scaler never started (started: %v)", j.RunnerName, j.RunnerID, s.order)
	}
	r.rec.State = "done"
	s.completed++
	reached := s.completed == s.o.jobs
	s.mu.Unlock()
	// The runner is ephemeral: it exits by itself after its job. Give it a moment, then stop it.
	select {
	case <-r.exited:
	case <-time.After(15 * time.Second):
		s.logger.Warn("runner still running 15 s after JobCompleted; stopping it", "name", r.rec.Name)
		stop(r)
	}
	if reached {
		close(s.done)
	}
	return nil
}

func (s *scaler) RecordStatistics(st *scaleset.RunnerScaleSetStatistic) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sum.Messages++
	if st == nil {
		return
	}
	s.sum.LastStatistics = st
	s.sum.MaxAssignedJobs = max(s.sum.MaxAssignedJobs, st.TotalAssignedJobs)
}
func (s *scaler) RecordJobStarted(*scaleset.JobStarted)     {}
func (s *scaler) RecordJobCompleted(*scaleset.JobCompleted) {}
func (s *scaler) RecordDesiredRunners(int)                  {}

// shutdown stops every runner process still running (SIGTERM to its group, then SIGKILL) and waits.
// Idempotent.
func (s *scaler) shutdown() { s.shutOnce.Do(s.doShutdown) }

func (s *scaler) doShutdown() {
	s.mu.Lock()
	rs := make([]*runner, 0, len(s.runners))
	for _, name := range s.order {
		rs = append(rs, s.runners[name])
	}
	s.mu.Unlock()
	for _, r := range rs {
		stop(r)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, name := range s.order {
		rec := s.runners[name].rec
		if !s.o.keepWorkDirs {
			rec.Dir = ""
		}
		s.sum.Runners = append(s.sum.Runners, rec)
	}
}

func stop(r *runner) {
	select {
	case <-r.exited:
		return
	default:
	}
	_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
		<-r.exited
	}
}

// ---------------------------------------------------------------- main flow

type stepError struct {
	step string
	err  error
}

func (e *stepError) Error() string { return e.step + ": " + e.err.Error() }
func (e *stepError) Unwrap() error { return e.err }

func at(step string, err error) error {
	if err == nil {
		return nil
	}
	return &stepError{step, err}
}

func newClient(o *options, logger *slog.Logger) (*scaleset.Client, error) {
	info := scaleset.SystemInfo{System: "ghr-scaleset-conformance", Version: "1", Subsystem: "listener"}
	httpOpts := []scaleset.HTTPOption{scaleset.WithLogger(logger.WithGroup("client")), scaleset.WithRetryMax(3),
		scaleset.WithRetryWaitMax(3 * time.Second), scaleset.WithTimeout(90 * time.Second)}
	if o.appClientID != "" {
		key, err := os.ReadFile(o.appKeyFile)
		if err != nil {
			return nil, fmt.Errorf("read --app-private-key-file: %w", err)
		}
		return scaleset.NewClientWithGitHubApp(scaleset.ClientWithGitHubAppConfig{
			GitHubConfigURL: o.url,
			GitHubAppAuth:   scaleset.GitHubAppAuth{ClientID: o.appClientID, InstallationID: o.appInstall, PrivateKey: string(key)},
			SystemInfo:      info,
		}, httpOpts...)
	}
	return scaleset.NewClientWithPersonalAccessToken(scaleset.NewClientWithPersonalAccessTokenConfig{
		GitHubConfigURL: o.url, PersonalAccessToken: o.token, SystemInfo: info,
	}, httpOpts...)
}

func run(o *options, logger *slog.Logger, sum *summary) (err error) {
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	cleanupCtx := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), 30*time.Second)
	}

	client, err := newClient(o, logger)
	if err != nil {
		return at("create the client", err)
	}

	runnerGroupID := 1
	if o.runnerGroup != scaleset.DefaultRunnerGroup {
		g, err := client.GetRunnerGroupByName(ctx, o.runnerGroup)
		if err != nil {
			return at("runner group by name", err)
		}
		runnerGroupID = g.ID
		sum.Checks = append(sum.Checks, "runner group by name")
	}

	labels := splitLabels(o.labels, o.name)
	sum.Labels = labels
	created, err := client.CreateRunnerScaleSet(ctx, &scaleset.RunnerScaleSet{
		Name: o.name, RunnerGroupID: runnerGroupID, Labels: toLabels(labels),
		RunnerSetting: scaleset.RunnerSetting{DisableUpdate: true},
	})
	if err != nil {
		return at("create the scale set", err)
	}
	if created.ID == 0 || created.Name != o.name {
		return at("create the scale set", fmt.Errorf("answer has id=%d name=%q, want a non-zero id and name %q", created.ID, created.Name, o.name))
	}
	sum.ScaleSetID = created.ID
	sum.Checks = append(sum.Checks, "create scale set")
	logger.Info("scale set created", "id", created.ID, "name", created.Name, "runnerGroupId", created.RunnerGroupID)
	client.SetSystemInfo(scaleset.SystemInfo{System: "ghr-scaleset-conformance", Version: "1", Subsystem: "listener", ScaleSetID: created.ID})

	deleted := false
	defer func() {
		if deleted {
			return
		}
		cctx, ccancel := cleanupCtx()
		defer ccancel()
		if derr := client.DeleteRunnerScaleSet(cctx, created.ID); derr != nil {
			logger.Error("delete the scale set after a failure", "id", created.ID, "err", derr)
		}
	}()

	if err := checkScaleSet(ctx, client, created.ID, runnerGroupID, o.name, labels, sum); err != nil {
		return err
	}

	owner, _ := os.Hostname()
	if owner == "" {
		owner = "ghr-conformance"
	}
	owner = fmt.Sprintf("%s-%d", owner, os.Getpid())
	session, err := client.MessageSessionClient(ctx, created.ID, owner)
	if err != nil {
		return at("create the message session", err)
	}
	sess := session.Session()
	sum.SessionID, sum.SessionOwner = sess.SessionID.String(), sess.OwnerName
	if sess.MessageQueueURL == "" || sess.MessageQueueAccessToken == "" {
		return at("create the message session", fmt.Errorf("session lacks messageQueueUrl or messageQueueAccessToken"))
	}
	sum.Checks = append(sum.Checks, "create session")
	sessionClosed := false
	defer func() {
		if sessionClosed {
			return
		}
		cctx, ccancel := cleanupCtx()
		defer ccancel()
		if cerr := session.Close(cctx); cerr != nil {
			logger.Error("close the session after a failure", "err", cerr)
		}
	}()

	workDir := o.workDir
	if workDir == "" {
		workDir, err = os.MkdirTemp("", "ghr-scaleset-conformance-")
		if err != nil {
			return at("create the work folder", err)
		}
		if !o.keepWorkDirs {
			defer os.RemoveAll(workDir)
		}
	} else if err := os.MkdirAll(workDir, 0o755); err != nil {
		return at("create the work folder", err)
	}

	sc := newScaler(o, client, created.ID, logger.WithGroup("scaler"), workDir, sum)
	defer sc.shutdown()
	l, err := listener.New(session, listener.Config{ScaleSetID: created.ID, MaxRunners: o.maxRunners, Logger: logger.WithGroup("listener")},
		listener.WithMetricsRecorder(sc))
	if err != nil {
		return at("create the listener", err)
	}

	lctx, lcancel := context.WithCancel(ctx)
	defer lcancel()
	runErr := make(chan error, 1)
	go func() { runErr <- l.Run(lctx, sc) }()

	select {
	case <-sc.done:
		lcancel()
		if err := <-runErr; err != nil && !errors.Is(err, context.Canceled) {
			logger.Warn("listener ended with an error after the last job", "err", err)
		}
		sum.Checks = append(sum.Checks, fmt.Sprintf("%d jobs completed", o.jobs))
	case err := <-runErr:
		if ctx.Err() != nil {
			return at("wait for the jobs", timeoutError(o, sc))
		}
		return at("listener", err)
	case err := <-sc.failed:
		lcancel()
		<-runErr
		return at("runner", err)
	case <-ctx.Done():
		lcancel()
		<-runErr
		return at("wait for the jobs", timeoutError(o, sc))
	}
	sc.shutdown() // runners stopped before the session and the scale set go

	cctx, ccancel := cleanupCtx()
	defer ccancel()
	if err := session.Close(cctx); err != nil {
		return at("delete the message session", err)
	}
	sessionClosed, sum.SessionClosed = true, true
	sum.Checks = append(sum.Checks, "delete session")

	if err := client.DeleteRunnerScaleSet(cctx, created.ID); err != nil {
		return at("delete the scale set", err)
	}
	deleted, sum.ScaleSetDeleted = true, true
	sum.Checks = append(sum.Checks, "delete scale set")
	gone, err := client.GetRunnerScaleSet(cctx, runnerGroupID, o.name)
	if err != nil {
		return at("scale set by name after delete", err)
	}
	if gone != nil {
		return at("scale set by name after delete", fmt.Errorf("still listed: id %d", gone.ID))
	}
	sum.ScaleSetGone = true
	sum.Checks = append(sum.Checks, "scale set gone by name")

	for _, j := range sum.Completed {
		if !strings.EqualFold(j.Result, "succeeded") {
			return at("job results", fmt.Errorf("job %s (runner %s) completed with result %q, want \"succeeded\"", j.JobID, j.RunnerName, j.Result))
		}
	}
	return nil
}

// checkScaleSet reads the new scale set back by id, patches it with the same content, and finds it by name.
func checkScaleSet(ctx context.Context, c *scaleset.Client, id, groupID int, name string, labels []string, sum *summary) error {
	got, err := c.GetRunnerScaleSetByID(ctx, id)
	if err != nil {
		return at("scale set by id", err)
	}
	if err := sameScaleSet(got, id, groupID, name, labels); err != nil {
		return at("scale set by id", err)
	}
	sum.Checks = append(sum.Checks, "scale set by id")

	patch := &scaleset.RunnerScaleSet{Name: name, RunnerGroupID: groupID, Labels: toLabels(labels),
		RunnerSetting: scaleset.RunnerSetting{DisableUpdate: true}}
	upd, err := c.UpdateRunnerScaleSet(ctx, id, patch)
	if err != nil {
		return at("update the scale set", err)
	}
	if err := sameScaleSet(upd, id, groupID, name, labels); err != nil {
		return at("update the scale set", err)
	}
	sum.Checks = append(sum.Checks, "update scale set")

	byName, err := c.GetRunnerScaleSet(ctx, groupID, name)
	if err != nil {
		return at("scale set by name", err)
	}
	if byName == nil {
		return at("scale set by name", fmt.Errorf("no scale set named %q in runner group %d", name, groupID))
	}
	if err := sameScaleSet(byName, id, groupID, name, labels); err != nil {
		return at("scale set by name", err)
	}
	sum.Checks = append(sum.Checks, "scale set by name")
	return nil
}

func sameScaleSet(got *scaleset.RunnerScaleSet, id, groupID int, name string, labels []string) error {
	if got == nil {
		return fmt.Errorf("empty answer")
	}
	if got.ID != id || got.Name != name || got.RunnerGroupID != groupID {
		return fmt.Errorf("got id=%d name=%q runnerGroupId=%d, want %d %q %d", got.ID, got.Name, got.RunnerGroupID, id, name, groupID)
	}
	have := make([]string, 0, len(got.Labels))
	for _, l := range got.Labels {
		have = append(have, strings.ToLower(l.Name))
	}
	wantL := make([]string, 0, len(labels))
	for _, l := range labels {
		wantL = append(wantL, strings.ToLower(l))
	}
	sort.Strings(have)
	sort.Strings(wantL)
	if strings.Join(have, ",") != strings.Join(wantL, ",") {
		return fmt.Errorf("labels %v, want %v", have, wantL)
	}
	return nil
}

func toLabels(names []string) []scaleset.Label {
	out := make([]scaleset.Label, 0, len(names))
	for _, n := range names {
		out = append(out, scaleset.Label{Name: n, Type: "System"})
	}
	return out
}

func splitLabels(s, name string) []string {
	var out []string
	for _, l := range strings.Split(s, ",") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		out = []string{name}
	}
	return out
}

func timeoutError(o *options, s *scaler) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "%d of %d jobs completed within %s (statistics updates: %d, JobStarted: %d)", s.completed, o.jobs, o.timeout,
		s.sum.Messages, len(s.sum.Started))
	if st := s.sum.LastStatistics; st != nil {
		fmt.Fprintf(&b, "; last statistics: %+v", *st)
	}
	for _, name := range s.order {
		r := s.runners[name]
		fmt.Fprintf(&b, "\nrunner %s (agent %d): state=%s exited=%v", name, r.rec.ID, r.rec.State, r.rec.Exited)
		if r.rec.State != "done" {
			fmt.Fprintf(&b, "; log ends:\n%s", tail(r.logPath, 800))
		}
	}
	return errors.New(b.String())
}

// ---------------------------------------------------------------- helpers

func envWithout(env []string, prefix string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, prefix) {
			out = append(out, kv)
		}
	}
	return out
}

func refName(r *scaleset.RunnerReference) string {
	if r == nil {
		return ""
	}
	return r.Name
}

// copyTree copies a runner folder (regular files, folders and symlinks, modes kept).
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, info.Mode().Perm()|0o700)
		case info.Mode()&os.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case info.Mode().IsRegular():
			in, err := os.Open(p)
			if err != nil {
				return err
			}
			defer in.Close()
			out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, info.Mode().Perm())
			if err != nil {
				return err
			}
			if _, err := io.Copy(out, in); err != nil {
				out.Close()
				return err
			}
			return out.Close()
		default:
			return nil // sockets, fifos: not part of a runner folder
		}
	})
}

func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	if st.Size() > n {
		_, _ = f.Seek(st.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return strings.TrimRight(string(b), "\n")
}

func clientModuleVersion() string {
	return "github.com/actions/scaleset " + scalesetVersion()
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "scaleset-conformance: %v (see -h)\n", err)
		os.Exit(2)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "scaleset-conformance: --log-level: %v\n", err)
		os.Exit(2)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	t0 := time.Now()
	sum := &summary{ScaleSetName: o.name, Checks: []string{}, Started: []jobRecord{}, Completed: []jobRecord{},
		Canceled: []jobRecord{}, Runners: []runnerRecord{}, DesiredCounts: []int{}, ClientModVersion: clientModuleVersion()}
	err = run(o, logger, sum)
	sum.ElapsedSeconds = time.Since(t0).Seconds()
	if err != nil {
		sum.Error = err.Error()
		var se *stepError
		if errors.As(err, &se) {
			sum.Step = se.step
		}
	} else {
		sum.OK = true
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(sum)
	if err != nil {
		fmt.Fprintf(os.Stderr, "scaleset-conformance: FAILED at %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "scaleset-conformance: OK: %d jobs completed through scale set %q in %.1fs\n", len(sum.Completed), o.name, sum.ElapsedSeconds)
}
