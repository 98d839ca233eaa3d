package blob

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// Local keeps objects in a directory on local disk.
//
// Layout: an object lives in <dir>/<hh>/<sha256(key) in hex>, where hh is
// the first two hex digits. Hashing the key, rather than using it as a
// path, keeps the local store's behaviour identical to S3's: "a" and "a/b"
// can both exist (a path would need "a" to be a file and a directory),
// a 300-byte segment does not hit NAME_MAX, no empty directories are left
// to clean up after Delete, and 256 fixed directories keep any one of them
// small. The key itself is recorded with the metadata, so the tree can be
// inventoried without the application.
//
// Metadata (key, SHA-256, content type) is a small JSON document in the
// extended attribute user.elph.blob of the data file, not a sidecar file:
// the attribute is set on the temporary file before it is renamed into
// place, so data and metadata appear together in one atomic rename, and a
// crash can leave neither a sidecar without its file nor a file whose
// sidecar describes the previous content. Open reads size and metadata
// through the open descriptor, so they always describe the bytes it
// serves. The price is a file system with user xattrs (ext4, XFS, Btrfs,
// tmpfs since Linux 6.6); NewLocal checks and says so. Copies need
// `cp -a`, `rsync -X` or `tar --xattrs` to keep the metadata.
type Local struct {
	dir string
}

var _ Store = (*Local)(nil)

const (
	localXattr = "user.elph.blob"
	// tmpPrefix names files being written; they are never a data file
	// (those are 64 hex digits), so a crash leaves them recognisable.
	tmpPrefix = ".put-"
	dirPerm   = 0o750
	filePerm  = 0o640
)

// localMeta is what the xattr holds.
type localMeta struct {
	Key         string `json:"key"`
	SHA256      string `json:"sha256"`
	ContentType string `json:"type"`
}

// NewLocal opens the store in dir, creating it (mode 0750) and its 256
// subdirectories when needed, and checks that the file system keeps
// extended attributes.
func NewLocal(dir string) (*Local, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("blob: local dir %q: %w", dir, err)
	}
	if err := os.MkdirAll(abs, dirPerm); err != nil {
		return nil, fmt.Errorf("blob: local dir: %w", err)
	}
	for i := range 256 {
		if err := os.Mkdir(filepath.Join(abs, fmt.Sprintf("%02x", i)), dirPerm); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("blob: local dir: %w", err)
		}
	}
	if err := syncDir(abs); err != nil {
		return nil, fmt.Errorf("blob: local dir: %w", err)
	}
	if err := probeXattr(abs); err != nil {
		return nil, fmt.Errorf("blob: local dir %s: the file system must support user extended attributes: %w", abs, err)
	}
	return &Local{dir: abs}, nil
}

func probeXattr(dir string) error {
	f, err := os.CreateTemp(dir, tmpPrefix+"probe-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	return unix.Fsetxattr(int(f.Fd()), localXattr, []byte("{}"), 0)
}

// path returns where key's data file lives.
func (l *Local) path(key string) string {
	sum := sha256.Sum256([]byte(key))
	name := hex.EncodeToString(sum[:])
	return filepath.Join(l.dir, name[:2], name)
}

// Put implements Store. The body goes to a temporary file in the object's
// directory, which is fsynced and renamed over the old object, and the
// directory fsynced after it, so the object is durable once Put returns.
func (l *Local) Put(ctx context.Context, key string, r io.Reader, maxSize int64, contentType string) (Info, error) {
	ct, err := checkPut(key, maxSize, contentType)
	if err != nil {
		return Info{}, err
	}
	p := l.path(key)
	dir := filepath.Dir(p)
	f, err := os.CreateTemp(dir, tmpPrefix+"*")
	if errors.Is(err, fs.ErrNotExist) {
		// Someone removed a subdirectory under us; NewLocal made them all.
		if err = os.MkdirAll(dir, dirPerm); err == nil {
			f, err = os.CreateTemp(dir, tmpPrefix+"*")
		}
	}
	if err != nil {
		return Info{}, fmt.Errorf("blob: put %q: %w", key, err)
	}
	info, err := writeTemp(ctx, f, key, r, maxSize, ct)
	if err == nil {
		err = os.Rename(f.Name(), p)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		f.Close()
		if rerr := os.Remove(f.Name()); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = errors.Join(err, rerr)
		}
		return Info{}, fmt.Errorf("blob: put %q: %w", key, err)
	}
	if err := f.Close(); err != nil {
		return Info{}, fmt.Errorf("blob: put %q: %w", key, err)
	}
	return info, nil
}

// writeTemp fills f from r and makes it durable, metadata included.
func writeTemp(ctx context.Context, f *os.File, key string, r io.Reader, maxSize int64, ct string) (Info, error) {
	b := newBody(ctx, r, maxSize)
	head := make([]byte, sniffLen)
	n, err := io.ReadFull(b, head)
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return Info{}, err
	}
	head = head[:n]
	if _, err := f.Write(head); err != nil {
		return Info{}, err
	}
	if n == sniffLen {
		if _, err := io.Copy(f, b); err != nil {
			return Info{}, err
		}
	}
	meta, err := json.Marshal(localMeta{Key: key, SHA256: b.sum(), ContentType: sniff(ct, head)})
	if err != nil {
		return Info{}, err
	}
	fd := int(f.Fd())
	if err := unix.Fsetxattr(fd, localXattr, meta, 0); err != nil {
		return Info{}, fmt.Errorf("set xattr: %w", err)
	}
	// CreateTemp makes 0600; the group (e.g. a backup user) may read.
	if err := f.Chmod(filePerm); err != nil {
		return Info{}, err
	}
	if err := f.Sync(); err != nil {
		return Info{}, err
	}
	return fileInfo(f, key)
}

// fileInfo describes the open file f, metadata from its xattr.
func fileInfo(f *os.File, key string) (Info, error) {
	st, err := f.Stat()
	if err != nil {
		return Info{}, err
	}
	info := Info{Key: key, Size: st.Size(), ModTime: st.ModTime()}
	fd := int(f.Fd())
	n, err := unix.Fgetxattr(fd, localXattr, nil)
	if errors.Is(err, unix.ENODATA) {
		// A file put there by hand: serve it, without hash or type.
		return info, nil
	}
	if err != nil {
		return Info{}, fmt.Errorf("get xattr: %w", err)
	}
	buf := make([]byte, n)
	if n, err = unix.Fgetxattr(fd, localXattr, buf); err != nil {
		return Info{}, fmt.Errorf("get xattr: %w", err)
	}
	var m localMeta
	if err := json.Unmarshal(buf[:n], &m); err != nil {
		return Info{}, fmt.Errorf("xattr %s: %w", localXattr, err)
	}
	info.SHA256, info.ContentType = m.SHA256, m.ContentType
	return info, nil
}

// Open implements Store. The Object is the open file: it keeps serving
// the content it was opened on even if the key is replaced or deleted.
func (l *Local) Open(ctx context.Context, key string) (Object, error) {
	if err := ValidKey(key); err != nil {
		return nil, err
	}
	f, err := os.Open(l.path(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("blob: open %q: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("blob: open %q: %w", key, err)
	}
	info, err := fileInfo(f, key)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("blob: open %q: %w", key, err)
	}
	return &localObject{File: f, info: info}, nil
}

type localObject struct {
	*os.File
	info Info
}

func (o *localObject) Info() Info { return o.info }

// Stat implements Store.
func (l *Local) Stat(ctx context.Context, key string) (Info, error) {
	if err := ValidKey(key); err != nil {
		return Info{}, err
	}
	// Through a descriptor so size and xattr come from the same file even
	// while a Put renames a new one into place.
	f, err := os.Open(l.path(key))
	if errors.Is(err, fs.ErrNotExist) {
		return Info{}, fmt.Errorf("blob: stat %q: %w", key, ErrNotFound)
	}
	if err != nil {
		return Info{}, fmt.Errorf("blob: stat %q: %w", key, err)
	}
	defer f.Close()
	info, err := fileInfo(f, key)
	if err != nil {
		return Info{}, fmt.Errorf("blob: stat %q: %w", key, err)
	}
	return info, nil
}

// Delete implements Store.
func (l *Local) Delete(ctx context.Context, key string) error {
	if err := ValidKey(key); err != nil {
		return err
	}
	p := l.path(key)
	err := os.Remove(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err == nil {
		err = syncDir(filepath.Dir(p))
	}
	if err != nil {
		return fmt.Errorf("blob: delete %q: %w", key, err)
	}
	return nil
}

// PresignGet implements Store: local files have no URL of their own, so
// it always answers ok=false and the caller streams the object.
func (l *Local) PresignGet(ctx context.Context, key string, ttl time.Duration, filename string) (string, bool, error) {
	if err := ValidKey(key); err != nil {
		return "", false, err
	}
	return "", false, nil
}

// Ping implements Store: the directory must exist and be writable (a file
// system remounted read-only after an error fails here).
func (l *Local) Ping(ctx context.Context) error {
	st, err := os.Stat(l.dir)
	if err != nil {
		return fmt.Errorf("blob: local dir: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("blob: local dir %s is not a directory", l.dir)
	}
	if err := unix.Access(l.dir, unix.W_OK); err != nil {
		return fmt.Errorf("blob: local dir %s is not writable: %w", l.dir, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
