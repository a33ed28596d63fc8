// Package yjs gives Go tests the real Yjs clients: the npm packages pinned
// in this directory's package-lock.json (yjs, y-websocket, ws), installed
// with `npm ci` on first use, and the Node scripts that drive them.
package yjs

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// Dir is the absolute path of this directory (package.json, scripts).
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}

// Ensure makes sure node_modules matches package-lock.json, running
// `npm ci` under a file lock when it does not (test binaries of several
// packages may ask at once). It fails the test when node or npm is missing.
func Ensure(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("yjs: node is required for this test: %v", err)
	}
	dir := Dir()
	lock, err := os.OpenFile(filepath.Join(dir, ".npm-ci.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatalf("yjs: open lock: %v", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatalf("yjs: lock: %v", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if installed(dir) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("yjs: npm ci in %s: %v\n%s", dir, err, out)
	}
}

// installed reports whether node_modules was installed from the current
// lock file (npm ci writes node_modules/.package-lock.json).
func installed(dir string) bool {
	want, err := os.ReadFile(filepath.Join(dir, "package-lock.json"))
	if err != nil {
		return false
	}
	have, err := os.ReadFile(filepath.Join(dir, "node_modules", ".package-lock.json"))
	if err != nil {
		return false
	}
	// The hidden lock omits the root package entry; compare the pinned
	// versions of what we use instead of the whole files.
	for _, pkg := range []string{"yjs", "y-websocket", "ws"} {
		if !bytes.Contains(have, []byte(`"node_modules/`+pkg+`"`)) || !bytes.Contains(want, []byte(`"node_modules/`+pkg+`"`)) {
			return false
		}
	}
	return bytes.Equal(versionOf(want, "yjs"), versionOf(have, "yjs")) && bytes.Equal(versionOf(want, "y-websocket"), versionOf(have, "y-websocket"))
}

func versionOf(lock []byte, pkg string) []byte {
	i := bytes.Index(lock, []byte(`"node_modules/`+pkg+`"`))
	if i < 0 {
		return nil
	}
	rest := lock[i:]
	j := bytes.Index(rest, []byte(`"version": "`))
	if j < 0 {
		return nil
	}
	rest = rest[j+len(`"version": "`):]
	k := bytes.IndexByte(rest, '"')
	if k < 0 {
		return nil
	}
	return rest[:k]
}

// Node runs `node script args...` in this directory with stdin as input
// and returns its stdout; a non-zero exit fails the test with stderr.
func Node(t testing.TB, ctx context.Context, stdin []byte, script string, args ...string) []byte {
	t.Helper()
	cmd := exec.CommandContext(ctx, "node", append([]string{script}, args...)...)
	cmd.Dir = Dir()
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("yjs: node %s %v: %v\n%s", script, args, err, stderr.Bytes())
	}
	return stdout.Bytes()
}

// Command returns an unstarted `node script args...` in this directory, for
// scripts that run alongside the test (providers that stay connected).
func Command(ctx context.Context, script string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "node", append([]string{script}, args...)...)
	cmd.Dir = Dir()
	return cmd
}
