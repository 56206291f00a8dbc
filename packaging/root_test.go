package packaging

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// lookupUser returns the uid and gid of name from root's /etc/passwd.
func lookupUser(t *testing.T, root, name string) (uid, gid int) {
	t.Helper()
	f, err := os.Open(filepath.Join(root, "etc/passwd"))
	if err != nil {
		t.Fatalf("no passwd in scratch root: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) < 7 || fields[0] != name {
			continue
		}
		uid, _ = strconv.Atoi(fields[2])
		gid, _ = strconv.Atoi(fields[3])
		if uid == 0 || uid >= 1000 {
			t.Errorf("user %s has uid %d, want a system uid (1-999)", name, uid)
		}
		if fields[6] != "/usr/sbin/nologin" {
			t.Errorf("user %s has shell %q, want /usr/sbin/nologin", name, fields[6])
		}
		return uid, gid
	}
	t.Fatalf("user %s not in %s/etc/passwd", name, root)
	return 0, 0
}

// checkDir checks that root+path is a directory with mode, uid and gid.
func checkDir(t *testing.T, root, path string, mode os.FileMode, uid, gid int) {
	t.Helper()
	fi, err := os.Stat(filepath.Join(root, path))
	if err != nil {
		t.Errorf("%s: %v", path, err)
		return
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		t.Fatalf("%s: no Stat_t", path)
	}
	if !fi.IsDir() || fi.Mode().Perm() != mode || int(st.Uid) != uid || int(st.Gid) != gid {
		t.Errorf("%s: mode %v uid %d gid %d; want dir %v uid %d gid %d", path, fi.Mode(), st.Uid, st.Gid, mode, uid, gid)
	}
}

func exists(root, path string) bool {
	_, err := os.Lstat(filepath.Join(root, path))
	return err == nil
}
