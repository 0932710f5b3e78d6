// pulumi-language-python: a small Python language host for the Pulumi engine.
//
// The upstream host (module github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3)
// is not served by the Go module proxy these machines reach, so the project carries this one.
// It implements the part of the LanguageRuntime protocol that `pulumi preview/up/refresh/destroy`
// use: it runs the program through the SDK's own `pulumi-language-python-exec` script (which must
// sit next to this binary, as with the upstream host) inside the project's virtualenv.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	pbempty "google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

// Set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit code the exec script uses after it has already shown the user an actionable message.
const bailExitCode = 32

type host struct {
	pulumirpc.UnimplementedLanguageRuntimeServer
	engineAddress string
	execScript    string
}

func main() {
	// The engine passes flags (ignored here) and the engine address as the last argument.
	var engine string
	for _, a := range os.Args[1:] {
		if !strings.HasPrefix(a, "-") {
			engine = a
		}
	}
	self, err := os.Executable()
	if err != nil {
		fatal(err)
	}
	if resolved, err := filepath.EvalSymlinks(self); err == nil {
		self = resolved
	}
	h := &host{engineAddress: engine, execScript: filepath.Join(filepath.Dir(self), "pulumi-language-python-exec")}
	if _, err := os.Stat(h.execScript); err != nil {
		fatal(fmt.Errorf("%s is missing: it must sit next to pulumi-language-python (rerun make setup)", h.execScript))
	}
	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Init: func(srv *grpc.Server) error {
			pulumirpc.RegisterLanguageRuntimeServer(srv, h)
			return nil
		},
	})
	if err != nil {
		fatal(err)
	}
	// The engine reads the port from the first line of stdout.
	fmt.Printf("%d\n", handle.Port)
	if err := <-handle.Done; err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintf(os.Stderr, "pulumi-language-python: %v\n", err)
	os.Exit(1)
}

func (h *host) Handshake(ctx context.Context, req *pulumirpc.LanguageHandshakeRequest) (*pulumirpc.LanguageHandshakeResponse, error) {
	if req.GetEngineAddress() != "" {
		h.engineAddress = req.GetEngineAddress()
	}
	return &pulumirpc.LanguageHandshakeResponse{}, nil
}

func (h *host) GetPluginInfo(ctx context.Context, _ *pbempty.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: version}, nil
}

// Plugins are installed by `make setup`, and the engine loads providers on first use, so no
// package scan is needed here.
func (h *host) GetRequiredPlugins(ctx context.Context, _ *pulumirpc.GetRequiredPluginsRequest) (*pulumirpc.GetRequiredPluginsResponse, error) {
	return &pulumirpc.GetRequiredPluginsResponse{}, nil
}

func (h *host) GetRequiredPackages(ctx context.Context, _ *pulumirpc.GetRequiredPackagesRequest) (*pulumirpc.GetRequiredPackagesResponse, error) {
	return &pulumirpc.GetRequiredPackagesResponse{}, nil
}

func (h *host) InstallDependencies(req *pulumirpc.InstallDependenciesRequest, server grpc.ServerStreamingServer[pulumirpc.InstallDependenciesResponse]) error {
	venv, err := virtualenv(req.GetInfo())
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(venv, "bin", "python")); err != nil {
		return fmt.Errorf("virtualenv %s does not exist: run `make setup` in the project", venv)
	}
	return nil
}

func (h *host) GetProgramDependencies(ctx context.Context, _ *pulumirpc.GetProgramDependenciesRequest) (*pulumirpc.GetProgramDependenciesResponse, error) {
	return &pulumirpc.GetProgramDependenciesResponse{}, nil
}

func (h *host) About(ctx context.Context, _ *pulumirpc.AboutRequest) (*pulumirpc.AboutResponse, error) {
	return &pulumirpc.AboutResponse{Executable: "python3"}, nil
}

func (h *host) RuntimeOptionsPrompts(ctx context.Context, _ *pulumirpc.RuntimeOptionsRequest) (*pulumirpc.RuntimeOptionsResponse, error) {
	return &pulumirpc.RuntimeOptionsResponse{}, nil
}

// virtualenv resolves the `virtualenv` runtime option of Pulumi.yaml against the project root.
func virtualenv(info *pulumirpc.ProgramInfo) (string, error) {
	root := info.GetRootDirectory()
	venv := ""
	if opts := info.GetOptions(); opts != nil {
		if v, ok := opts.AsMap()["virtualenv"].(string); ok {
			venv = v
		}
	}
	if venv == "" {
		return "", errors.New("Pulumi.yaml must set runtime.options.virtualenv (this host runs programs only in a virtualenv)")
	}
	if !filepath.IsAbs(venv) {
		venv = filepath.Join(root, venv)
	}
	return venv, nil
}

func (h *host) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	venv, err := virtualenv(req.GetInfo())
	if err != nil {
		return &pulumirpc.RunResponse{Error: err.Error()}, nil
	}
	python := filepath.Join(venv, "bin", "python")
	if _, err := os.Stat(python); err != nil {
		return &pulumirpc.RunResponse{Error: fmt.Sprintf(
			"the virtualenv %s has no python: run `make setup` (it creates it and installs requirements.txt)", venv)}, nil
	}

	// A stack without config sends nil, which would marshal to `null`; the SDK wants {} and [].
	cfg := req.GetConfig()
	if cfg == nil {
		cfg = map[string]string{}
	}
	keys := req.GetConfigSecretKeys()
	if keys == nil {
		keys = []string{}
	}
	config, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	secretKeys, err := json.Marshal(keys)
	if err != nil {
		return nil, err
	}

	program := req.GetInfo().GetEntryPoint()
	if program == "" {
		program = "."
	}
	args := []string{"-u", h.execScript,
		"--monitor", req.GetMonitorAddress(),
		"--engine", h.engineAddress,
		"--project", req.GetProject(),
		"--stack", req.GetStack(),
		"--pwd", req.GetPwd(),
		"--dry_run", strconv.FormatBool(req.GetDryRun()),
		"--parallel", strconv.Itoa(int(req.GetParallel())),
		"--organization", req.GetOrganization(),
		"--root_directory", req.GetInfo().GetRootDirectory(),
		program,
	}
	args = append(args, req.GetArgs()...)

	cmd := exec.CommandContext(ctx, python, args...)
	cmd.Dir = req.GetInfo().GetProgramDirectory()
	if cmd.Dir == "" {
		cmd.Dir = req.GetPwd()
	}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	env := os.Environ()
	env = append(env,
		"PULUMI_CONFIG="+string(config),
		"PULUMI_CONFIG_SECRET_KEYS="+string(secretKeys),
		"VIRTUAL_ENV="+venv,
		"PULUMI_RUNTIME_VIRTUALENV="+venv,
		"PATH="+filepath.Join(venv, "bin")+string(os.PathListSeparator)+os.Getenv("PATH"),
	)
	if req.GetLoaderTarget() != "" {
		env = append(env, "PULUMI_LOADER_TARGET="+req.GetLoaderTarget())
	}
	cmd.Env = env

	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			if exit.ExitCode() == bailExitCode {
				return &pulumirpc.RunResponse{Bail: true}, nil
			}
			return &pulumirpc.RunResponse{Error: fmt.Sprintf("Program exited with non-zero exit code: %d", exit.ExitCode())}, nil
		}
		return nil, status.Errorf(codes.Internal, "running the program: %v", err)
	}
	return &pulumirpc.RunResponse{}, nil
}
