// Package archtest keeps the import direction of DESIGN.md true: lower layers never
// import higher ones, and the DFS client talks to the master only through dfs/proto.
package archtest

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/rampart-storage/rampart/"

// allowed lists, for each internal package tree, the internal trees it may import.
// A package not listed here may import anything below cmd/ (it is new: add it).
// internal/testutil, used only by tests, may import anything.
var allowed = map[string][]string{
	"internal/blockdev":        {"internal/blockdev"},
	"internal/units":           {},
	"internal/volume":          {"internal/blockdev"},
	"internal/scsi":            {"internal/blockdev"},
	"internal/iscsi":           {"internal/iscsi"},
	"internal/iscsi/target":    {"internal/iscsi", "internal/scsi", "internal/blockdev", "internal/volume", "internal/units"},
	"internal/iscsi/initiator": {"internal/iscsi", "internal/blockdev", "internal/volume"},
	"internal/multipath":       {"internal/iscsi/initiator", "internal/iscsi", "internal/scsi", "internal/blockdev", "internal/volume"},
	"internal/fuseexport":      {"internal/blockdev"},
	"internal/raid":            {"internal/blockdev", "internal/volume", "internal/units"},
	"internal/nbd":             {"internal/blockdev"},
	"internal/dfs/proto":       {"internal/dfs/proto"},
	"internal/dfs/client":      {"internal/dfs/proto", "internal/dfs/client"},
	"internal/dfs/fusefs":      {"internal/dfs/client", "internal/dfs/proto"},
	"internal/dfs/chunkserver": {"internal/dfs/proto", "internal/dfs/chunkserver", "internal/blockdev"},
	"internal/dfs/meta":        {"internal/dfs/proto", "internal/dfs/meta"},
	"internal/dfs/master":      {"internal/dfs/proto", "internal/dfs/meta", "internal/dfs/master"},
	// The demo drives rampart processes through their CLIs; it reads only wire types.
	"internal/demo": {"internal/dfs/proto"},
	// The web console reads the master's state in process.
	"internal/web": {"internal/dfs/master", "internal/dfs/proto"},
}

// rule returns the most specific rule for a package directory.
func rule(dir string) (string, []string, bool) {
	best := ""
	for k := range allowed {
		if (dir == k || strings.HasPrefix(dir, k+"/")) && len(k) > len(best) {
			best = k
		}
	}
	if best == "" {
		return "", nil, false
	}
	return best, allowed[best], true
}

func TestLayers(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	err = filepath.WalkDir(filepath.Join(root, "internal"), func(path string, d fs.DirEntry, err error) error {
		// Tests may reach up the stack (an initiator test runs against the real target);
		// the layering is about the code that ships.
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			p := strings.Trim(imp.Path.Value, `"`)
			if !strings.HasPrefix(p, module) {
				continue
			}
			target := strings.TrimPrefix(p, module)
			if strings.HasPrefix(target, "cmd/") {
				t.Errorf("%s imports %s: nothing under internal/ may import a command", path, target)
				continue
			}
			key, ok2, ok := rule(rel)
			if !ok || target == rel || strings.HasPrefix(target, "internal/testutil") || target == "internal/blockdev/blockdevtest" {
				continue
			}
			permitted := false
			for _, a := range ok2 {
				if target == a || strings.HasPrefix(target, a+"/") {
					permitted = true
				}
			}
			if !permitted {
				t.Errorf("%s imports %s: the %s layer may import only %v", strings.TrimPrefix(path, root+"/"), target, key, ok2)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestEveryPackageHasADocComment(t *testing.T) {
	root, _ := filepath.Abs("../..")
	fset := token.NewFileSet()
	dirs := map[string]bool{}
	filepath.WalkDir(filepath.Join(root, "internal"), func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			dirs[filepath.Dir(path)] = dirs[filepath.Dir(path)] || hasDoc(fset, path)
		}
		return nil
	})
	for dir, ok := range dirs {
		if !ok {
			rel, _ := filepath.Rel(root, dir)
			t.Errorf("package %s has no package doc comment", rel)
		}
	}
}

func hasDoc(fset *token.FileSet, path string) bool {
	src, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	f, err := parser.ParseFile(fset, path, src, parser.PackageClauseOnly|parser.ParseComments)
	return err == nil && f.Doc != nil
}
