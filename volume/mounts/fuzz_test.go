package mounts

import (
	"fmt"
	"strings"
	"testing"
)

// kernelEscape is how the kernel writes a path into mountinfo
// (seq_path with " \t\n\\"): those four bytes as \ooo.
func kernelEscape(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case ' ', '\t', '\n', '\\':
			fmt.Fprintf(&b, `\%03o`, c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// FuzzParseMountInfo: a mount point the kernel escaped is read back
// exactly, next to other lines, and no input makes the parser fail.
func FuzzParseMountInfo(f *testing.F) {
	for _, s := range []string{"/mnt/a", "/mnt/with space", `/mnt/back\slash`, `/mnt/\040literal`, "/mnt/tab\there", "/mnt/nl\nx", "/é", `\`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, mp string) {
		if _, err := parseMountInfo(strings.NewReader(mp)); err != nil && len(mp) < 64<<10 {
			t.Fatalf("parseMountInfo(%q): %v", mp, err)
		}
		if mp == "" || strings.ContainsRune(mp, 0) {
			return // the kernel never lists an empty or NUL-holding path
		}
		in := "22 1 0:21 / /proc rw,nosuid - proc proc rw\n" +
			"36 22 98:0 /data " + kernelEscape(mp) + " rw,noatime master:1 - ext4 /dev/root rw\n" +
			"37 22 0:5 / /dev rw - devtmpfs udev rw\n"
		got, err := parseMountInfo(strings.NewReader(in))
		if err != nil {
			t.Fatalf("parseMountInfo: %v", err)
		}
		if !got[mp] || len(got) != 3 && mp != "/proc" && mp != "/dev" {
			t.Fatalf("mount point %q (escaped %q) not read back: %v", mp, kernelEscape(mp), got)
		}
	})
}
