package netns

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// EnvName is set, in the re-executed runner, to the name of the namespace it
// runs in.
const EnvName = "JEPSEN_NETNS"

// namePrefix starts every namespace this package creates; the owner's pid
// follows, so that namespaces of dead runs can be recognised and removed.
const namePrefix = "jepsen-"

// ErrPrerequisites: the machine cannot host the harness (not root, or a
// required tool is missing).
var ErrPrerequisites = errors.New("missing prerequisites")

// Inside returns the namespace the current process was re-executed in, if
// any.
func Inside() (string, bool) {
	name := os.Getenv(EnvName)
	return name, name != ""
}

// CheckPrerequisites reports why this machine cannot create namespaces and
// filter packets, or nil if it can.
func CheckPrerequisites() error {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root privileges (network namespaces and nftables need them; run with sudo)")
	}
	for _, tool := range []struct{ bin, pkg string }{{"ip", "iproute2"}, {"nft", "nftables"}, {"tc", "iproute2"}} {
		if _, err := exec.LookPath(tool.bin); err != nil {
			missing = append(missing, fmt.Sprintf("the %q command (Debian/Ubuntu package %s)", tool.bin, tool.pkg))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s", ErrPrerequisites, strings.Join(missing, "; "))
	}
	return nil
}

// Create makes a new namespace with a unique name and brings its loopback
// device up.
func Create(ctx context.Context) (string, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	name := fmt.Sprintf("%s%d-%s", namePrefix, os.Getpid(), hex.EncodeToString(b[:]))
	if err := run(ctx, "ip", "netns", "add", name); err != nil {
		return "", fmt.Errorf("create network namespace: %w", err)
	}
	if err := run(ctx, "ip", "-n", name, "link", "set", "lo", "up"); err != nil {
		_ = Delete(context.WithoutCancel(ctx), name)
		return "", fmt.Errorf("bring lo up in %s: %w", name, err)
	}
	return name, nil
}

// Delete removes the namespace. Processes still inside keep it alive until
// they exit, but it loses its name.
func Delete(ctx context.Context, name string) error {
	if err := run(ctx, "ip", "netns", "delete", name); err != nil {
		return fmt.Errorf("delete network namespace %s: %w", name, err)
	}
	return nil
}

// Command returns a command running argv inside the namespace, with EnvName
// set so the program knows where it is. If the calling process dies, the
// command gets SIGTERM, so that it can still clean up.
func Command(name string, argv []string) *exec.Cmd {
	cmd := exec.Command("ip", append([]string{"netns", "exec", name}, argv...)...)
	cmd.Env = append(os.Environ(), EnvName+"="+name)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	return cmd
}

// RemoveStale deletes namespaces left behind by runs whose process is gone
// (killed with SIGKILL, say).
func RemoveStale(ctx context.Context, log *slog.Logger) {
	out, err := exec.CommandContext(ctx, "ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		rest, ok := strings.CutPrefix(name, namePrefix)
		if !ok {
			continue
		}
		pidText, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid == os.Getpid() || processAlive(pid) {
			continue
		}
		if err := Delete(ctx, name); err != nil {
			log.Warn("could not remove a stale namespace", "name", name, "err", err)
		} else {
			log.Info("removed a stale namespace of a dead run", "name", name)
		}
	}
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// run runs a command and folds its stderr into the error.
func run(ctx context.Context, name string, args ...string) error {
	_, err := output(ctx, "", name, args...)
	return err
}

// output runs a command with stdin and returns its stdout; a failure carries
// the command line and its stderr.
func output(ctx context.Context, stdin, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}
