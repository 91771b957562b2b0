// Package testutil holds helpers shared by tests: the root gate, and later network
// namespaces, process runners and peers.
package testutil

import (
	"os"
	"testing"
)

// RequireRoot skips the test unless it runs as root with RAMPART_ROOT_TESTS=1, the gate
// for tests that mount FUSE, build network namespaces or use loop devices. The README's
// test command (scripts/test.sh) opens the gate when it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 || os.Getenv("RAMPART_ROOT_TESTS") != "1" {
		t.Skip("needs root and RAMPART_ROOT_TESTS=1 (run scripts/test.sh as root)")
	}
}
