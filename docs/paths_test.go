package docs

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Markdown files name repository paths in backticks (`internal/httpx`,
// `scripts/stack.sh`); each must exist. A token counts as a path when it
// has a slash, only path characters, and its first element exists at the
// repository's root (URLs are not taken for one); it may be relative to the
// root or to the Markdown file. bin/ and .run/, which the build and the
// stacks make, are not checked.
var (
	backticked = regexp.MustCompile("`([^`\n]+)`")
	pathLike   = regexp.MustCompile(`^[A-Za-z0-9_.\-/]+$`)
)

func TestDocs_NamedPathsExist(t *testing.T) {
	root := ".."
	var mds []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "bin" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".md") {
			mds = append(mds, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(mds) < 5 {
		t.Fatalf("found only %d Markdown files: %v", len(mds), mds)
	}
	checked := 0
	for _, md := range mds {
		raw, err := os.ReadFile(md)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range backticked.FindAllStringSubmatch(string(raw), -1) {
			tok := strings.TrimRight(m[1], ".,:;)")
			if !strings.Contains(tok, "/") || !pathLike.MatchString(tok) || strings.HasPrefix(tok, "/") || strings.Contains(tok, "//") {
				continue
			}
			first := strings.SplitN(tok, "/", 2)[0]
			if first == "" || strings.HasPrefix(first, ".") || first == "bin" { // bin/ and .run/ are made by the build and the stacks

				continue
			}
			if _, err := os.Stat(filepath.Join(root, first)); err != nil {
				continue
			}
			checked++
			_, errRoot := os.Stat(filepath.Join(root, tok))
			_, errHere := os.Stat(filepath.Join(filepath.Dir(md), tok)) // relative to the file
			if errRoot != nil && errHere != nil {
				rel, _ := filepath.Rel(root, md)
				t.Errorf("%s names `%s`, which does not exist", rel, m[1])
			}
		}
	}
	if checked < 20 {
		t.Fatalf("checked only %d paths: the scan is broken", checked)
	}
}
