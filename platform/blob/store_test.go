package blob_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/elph-server/elph/platform/blob"
	"github.com/elph-server/elph/platform/blob/blobtest"
)

// partSize is the S3 store's part size in these tests: the smallest S3
// allows, so bodies of a few MB take the multipart path.
const partSize = blob.MinPartSize

// backend is one Store under test plus what the contract cannot see
// through the interface: the files or objects a store keeps besides its
// objects (temporary files, multipart uploads), which must be none once
// every Put has returned.
type backend struct {
	name   string
	store  blob.Store
	debris func(t *testing.T) []string
}

func newLocal(t *testing.T) backend {
	dir := filepath.Join(t.TempDir(), "blobs")
	s, err := blob.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	return backend{name: "local", store: s, debris: func(t *testing.T) []string {
		t.Helper()
		var left []string
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if strings.HasPrefix(d.Name(), ".") {
				left = append(left, p)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return left
	}}
}

func newS3(t *testing.T) backend {
	srv := blobtest.Start(t)
	o := srv.Options("elph-contract")
	o.PartSize = partSize
	s, err := blob.NewS3(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	client := srv.Client(t)
	return backend{name: "s3", store: s, debris: func(t *testing.T) []string {
		t.Helper()
		var left []string
		// The store's own objects are the ones no valid key can name.
		for o := range client.ListObjects(t.Context(), o.Bucket, minio.ListObjectsOptions{Recursive: true}) {
			if o.Err != nil {
				t.Fatal(o.Err)
			}
			if blob.ValidKey(o.Key) != nil {
				left = append(left, "object "+o.Key)
			}
		}
		for u := range client.ListIncompleteUploads(t.Context(), o.Bucket, "", true) {
			if u.Err != nil {
				t.Fatal(u.Err)
			}
			left = append(left, "upload "+u.Key)
		}
		return left
	}}
}

// forEachBackend runs the contract against both backends, each fresh.
func forEachBackend(t *testing.T, fn func(t *testing.T, b backend)) {
	for _, mk := range []struct {
		name string
		new  func(*testing.T) backend
	}{{"local", newLocal}, {"s3", newS3}} {
		t.Run(mk.name, func(t *testing.T) {
			b := mk.new(t)
			fn(t, b)
			if left := b.debris(t); len(left) > 0 {
				t.Errorf("left behind: %q", left)
			}
		})
	}
}

func randomBytes(seed uint64, n int) []byte {
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	b := make([]byte, n)
	r.Read(b)
	return b
}

func sha(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func put(t *testing.T, s blob.Store, key string, data []byte, contentType string) blob.Info {
	t.Helper()
	info, err := s.Put(t.Context(), key, bytes.NewReader(data), int64(len(data)), contentType)
	if err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
	return info
}

func readAll(t *testing.T, s blob.Store, key string) ([]byte, blob.Info) {
	t.Helper()
	obj, err := s.Open(t.Context(), key)
	if err != nil {
		t.Fatalf("Open(%q): %v", key, err)
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil {
		t.Fatalf("read %q: %v", key, err)
	}
	return b, obj.Info()
}

func assertMissing(t *testing.T, s blob.Store, key string) {
	t.Helper()
	if _, err := s.Stat(t.Context(), key); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Stat(%q) = %v, want ErrNotFound", key, err)
	}
	if obj, err := s.Open(t.Context(), key); !errors.Is(err, blob.ErrNotFound) {
		if err == nil {
			obj.Close()
		}
		t.Errorf("Open(%q) = %v, want ErrNotFound", key, err)
	}
}

// sameInfo compares what both backends report identically. ModTime is
// compared exactly: every call must report the one stored time.
func sameInfo(t *testing.T, what string, got, want blob.Info) {
	t.Helper()
	if got.Key != want.Key || got.Size != want.Size || got.SHA256 != want.SHA256 ||
		got.ContentType != want.ContentType || !got.ModTime.Equal(want.ModTime) {
		t.Errorf("%s = %+v, want %+v", what, got, want)
	}
}

func TestRoundTrip(t *testing.T) {
	sizes := []struct {
		name string
		size int
	}{
		{"empty", 0},
		{"one byte", 1},
		{"3MB", 3<<20 + 17},
		// For S3: exactly one part, then a read that finds nothing more.
		{"one part", partSize},
		{"parts", 2*partSize + 123},
		{"whole parts", 2 * partSize},
	}
	forEachBackend(t, func(t *testing.T, b backend) {
		for i, tc := range sizes {
			t.Run(tc.name, func(t *testing.T) {
				data := randomBytes(uint64(i), tc.size)
				key := fmt.Sprintf("round/trip-%d.bin", i)
				info := put(t, b.store, key, data, "application/octet-stream")
				if info.Key != key || info.Size != int64(len(data)) || info.SHA256 != sha(data) ||
					info.ContentType != "application/octet-stream" || info.ModTime.IsZero() {
					t.Fatalf("Put = %+v, want key %q size %d sha256 %s", info, key, len(data), sha(data))
				}
				st, err := b.store.Stat(t.Context(), key)
				if err != nil {
					t.Fatal(err)
				}
				sameInfo(t, "Stat", st, info)
				got, oinfo := readAll(t, b.store, key)
				sameInfo(t, "Object.Info", oinfo, info)
				if !bytes.Equal(got, data) {
					t.Fatalf("read %d bytes (sha256 %s), want %d (%s)", len(got), sha(got), len(data), sha(data))
				}
			})
		}
	})
}

func TestOverwrite(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		put(t, b.store, "over/write", []byte("first version"), "")
		second := randomBytes(7, partSize+1)
		info := put(t, b.store, "over/write", second, "")
		got, _ := readAll(t, b.store, "over/write")
		if !bytes.Equal(got, second) || info.SHA256 != sha(second) {
			t.Fatalf("after overwrite: read %d bytes, info %+v", len(got), info)
		}
	})
}

func TestContentTypeSniffing(t *testing.T) {
	png := append([]byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), randomBytes(1, 600)...)
	tests := []struct {
		name  string
		data  []byte
		given string
		want  string
	}{
		{"png", png, "", "image/png"},
		{"text", []byte("Привет, hello\n"), "", "text/plain; charset=utf-8"},
		{"empty", nil, "", "text/plain; charset=utf-8"},
		{"pdf", []byte("%PDF-1.7\n"), "", "application/pdf"},
		{"binary", []byte{0, 1, 2, 3, 0xfe}, "", "application/octet-stream"},
		{"given wins", png, "application/x-custom", "application/x-custom"},
		{"given is canonicalised", []byte("<p>"), "Text/HTML; Charset=UTF-8", "text/html; charset=UTF-8"},
		// The sniffer sees the first 512 bytes of a multipart body.
		{"png in parts", append(png, randomBytes(2, partSize)...), "", "image/png"},
	}
	forEachBackend(t, func(t *testing.T, b backend) {
		for i, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				key := fmt.Sprintf("sniff/%d", i)
				info := put(t, b.store, key, tc.data, tc.given)
				if info.ContentType != tc.want {
					t.Errorf("Put: content type %q, want %q", info.ContentType, tc.want)
				}
				st, err := b.store.Stat(t.Context(), key)
				if err != nil {
					t.Fatal(err)
				}
				if st.ContentType != tc.want {
					t.Errorf("Stat: content type %q, want %q", st.ContentType, tc.want)
				}
			})
		}
	})
}

func TestBadContentType(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		for _, ct := range []string{"text/plain\r\nX-Injected: 1", "not a type", "image/", strings.Repeat("a", 250) + "/" + strings.Repeat("b", 10)} {
			_, err := b.store.Put(t.Context(), "bad/type", strings.NewReader("x"), 10, ct)
			if !errors.Is(err, blob.ErrBadContentType) {
				t.Errorf("Put with content type %q: %v, want ErrBadContentType", ct, err)
			}
		}
		assertMissing(t, b.store, "bad/type")
	})
}

func TestTooLarge(t *testing.T) {
	tests := []struct {
		name    string
		size    int
		maxSize int64
	}{
		{"one byte over", 1001, 1000},
		{"empty allowed nothing", 1, 0},
		// For S3: refused after parts have been uploaded.
		{"over after parts", 2*partSize + 10, 2 * partSize},
	}
	forEachBackend(t, func(t *testing.T, b backend) {
		for i, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				key := fmt.Sprintf("large/%d", i)
				_, err := b.store.Put(t.Context(), key, bytes.NewReader(randomBytes(3, tc.size)), tc.maxSize, "")
				if !errors.Is(err, blob.ErrTooLarge) {
					t.Fatalf("Put of %d bytes, max %d: %v, want ErrTooLarge", tc.size, tc.maxSize, err)
				}
				assertMissing(t, b.store, key)

				// Exactly maxSize is fine.
				data := randomBytes(4, int(tc.maxSize))
				if info := put(t, b.store, key, data, ""); info.Size != tc.maxSize {
					t.Fatalf("Put of exactly maxSize: size %d", info.Size)
				}

				// A refused overwrite leaves the old object as it was.
				_, err = b.store.Put(t.Context(), key, bytes.NewReader(randomBytes(5, tc.size)), tc.maxSize, "")
				if !errors.Is(err, blob.ErrTooLarge) {
					t.Fatalf("overwrite: %v, want ErrTooLarge", err)
				}
				if got, _ := readAll(t, b.store, key); !bytes.Equal(got, data) {
					t.Fatal("a refused overwrite changed the object")
				}
			})
		}
	})
}

// failingReader yields n bytes, then err.
type failingReader struct {
	r   io.Reader
	n   int
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n == 0 {
		return 0, f.err
	}
	if len(p) > f.n {
		p = p[:f.n]
	}
	n, err := f.r.Read(p)
	f.n -= n
	return n, err
}

func TestFailingReader(t *testing.T) {
	errBoom := errors.New("connection reset by client")
	tests := []struct {
		name string
		at   int
	}{
		{"at once", 0},
		{"midway", 1000},
		{"after parts", partSize + 100},
	}
	forEachBackend(t, func(t *testing.T, b backend) {
		for i, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				key := fmt.Sprintf("fail/%d", i)
				r := &failingReader{r: bytes.NewReader(randomBytes(6, 3*partSize)), n: tc.at, err: errBoom}
				_, err := b.store.Put(t.Context(), key, r, 1<<30, "")
				if !errors.Is(err, errBoom) {
					t.Fatalf("Put: %v, want the reader's error", err)
				}
				assertMissing(t, b.store, key)
			})
		}
	})
}

func TestCanceledPut(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx, cancel := context.WithCancel(t.Context())
		pr, pw := io.Pipe()
		done := make(chan error, 1)
		go func() {
			_, err := b.store.Put(ctx, "cancel/me", pr, 1<<30, "")
			done <- err
		}()
		// A write returns once Put has read it: Put is mid-body.
		if _, err := pw.Write(randomBytes(8, partSize+10)); err != nil {
			t.Fatal(err)
		}
		cancel()
		// Unblock Put's next read; the body's ctx check fails it.
		go pw.Write([]byte("more"))
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("Put: %v, want context.Canceled", err)
		}
		pw.Close()
		assertMissing(t, b.store, "cancel/me")
	})
}

// TestNoPartialObject: while a Put is in progress the key shows the old
// object (or none), never part of the new one.
func TestNoPartialObject(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		for _, key := range []string{"partial/new", "partial/old"} {
			var old []byte
			if key == "partial/old" {
				old = []byte("the old content")
				put(t, b.store, key, old, "")
			}
			data := randomBytes(9, 2*partSize+5)
			pr, pw := io.Pipe()
			done := make(chan error, 1)
			go func() {
				_, err := b.store.Put(t.Context(), key, pr, 1<<30, "")
				done <- err
			}()
			half := len(data) / 2
			if _, err := pw.Write(data[:half]); err != nil {
				t.Fatal(err)
			}
			if old == nil {
				assertMissing(t, b.store, key)
			} else if got, _ := readAll(t, b.store, key); !bytes.Equal(got, old) {
				t.Errorf("%s: mid-Put read %d bytes, want the old object", key, len(got))
			}
			if _, err := pw.Write(data[half:]); err != nil {
				t.Fatal(err)
			}
			pw.Close()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if got, _ := readAll(t, b.store, key); !bytes.Equal(got, data) {
				t.Errorf("%s: after Put read %d bytes, want the new object", key, len(got))
			}
		}
	})
}

func TestRangeRequest(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		data := randomBytes(10, 3<<20)
		put(t, b.store, "range/file.bin", data, "")
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			obj, err := b.store.Open(r.Context(), "range/file.bin")
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			defer obj.Close()
			w.Header().Set("Content-Type", obj.Info().ContentType)
			http.ServeContent(w, r, "", obj.Info().ModTime, obj)
		}))
		defer srv.Close()

		tests := []struct {
			rng       string
			from, to  int // inclusive
			wantRange string
		}{
			{"bytes=100-199", 100, 199, fmt.Sprintf("bytes 100-199/%d", len(data))},
			{"bytes=-10", len(data) - 10, len(data) - 1, fmt.Sprintf("bytes %d-%d/%d", len(data)-10, len(data)-1, len(data))},
			{"bytes=2097152-", 2 << 20, len(data) - 1, fmt.Sprintf("bytes 2097152-%d/%d", len(data)-1, len(data))},
		}
		for _, tc := range tests {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL, nil)
			req.Header.Set("Range", tc.rng)
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusPartialContent {
				t.Fatalf("%s: status %d, want 206: %s", tc.rng, resp.StatusCode, got)
			}
			if cr := resp.Header.Get("Content-Range"); cr != tc.wantRange {
				t.Errorf("%s: Content-Range %q, want %q", tc.rng, cr, tc.wantRange)
			}
			if !bytes.Equal(got, data[tc.from:tc.to+1]) {
				t.Errorf("%s: got %d bytes that differ from data[%d:%d]", tc.rng, len(got), tc.from, tc.to+1)
			}
		}
	})
}

func TestSeek(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		data := randomBytes(11, 1<<20)
		put(t, b.store, "seek/me", data, "")
		obj, err := b.store.Open(t.Context(), "seek/me")
		if err != nil {
			t.Fatal(err)
		}
		defer obj.Close()
		steps := []struct {
			off    int64
			whence int
			want   int64
		}{
			{0, io.SeekEnd, int64(len(data))},
			{500, io.SeekStart, 500},
			{-100, io.SeekEnd, int64(len(data)) - 100},
			{0, io.SeekStart, 0},
		}
		for _, st := range steps {
			pos, err := obj.Seek(st.off, st.whence)
			if err != nil || pos != st.want {
				t.Fatalf("Seek(%d, %d) = %d, %v; want %d", st.off, st.whence, pos, err, st.want)
			}
			if pos == int64(len(data)) {
				continue
			}
			buf := make([]byte, 50)
			if _, err := io.ReadFull(obj, buf); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf, data[pos:pos+50]) {
				t.Fatalf("after Seek to %d: wrong bytes", pos)
			}
		}
	})
}

func TestNotFound(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		assertMissing(t, b.store, "never/stored")
	})
}

func TestDelete(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		put(t, b.store, "del/a", []byte("a"), "")
		put(t, b.store, "del/b", []byte("b"), "")
		for i := range 2 { // the second time there is nothing to delete
			if err := b.store.Delete(t.Context(), "del/a"); err != nil {
				t.Fatalf("Delete #%d: %v", i+1, err)
			}
			assertMissing(t, b.store, "del/a")
		}
		if err := b.store.Delete(t.Context(), "del/never"); err != nil {
			t.Fatalf("Delete of a key never stored: %v", err)
		}
		if got, _ := readAll(t, b.store, "del/b"); string(got) != "b" {
			t.Fatalf("Delete removed another key")
		}
	})
}

func TestBadKeys(t *testing.T) {
	keys := []string{
		"", "../x", "a/../b", "..", "/abs", "a//b", "a/./b", "./a", "a/", "a/.",
		"A", "files/Report.pdf", "a b", "a\\b", "a\x00b", "ключ", "a_b/Ж",
		strings.Repeat("a", blob.MaxKeyLen+1),
	}
	methods := []struct {
		name string
		call func(ctx context.Context, s blob.Store, key string) error
	}{
		{"Put", func(ctx context.Context, s blob.Store, key string) error {
			_, err := s.Put(ctx, key, strings.NewReader("x"), 10, "")
			return err
		}},
		{"Open", func(ctx context.Context, s blob.Store, key string) error {
			obj, err := s.Open(ctx, key)
			if err == nil {
				obj.Close()
			}
			return err
		}},
		{"Stat", func(ctx context.Context, s blob.Store, key string) error {
			_, err := s.Stat(ctx, key)
			return err
		}},
		{"Delete", func(ctx context.Context, s blob.Store, key string) error {
			return s.Delete(ctx, key)
		}},
		{"PresignGet", func(ctx context.Context, s blob.Store, key string) error {
			_, _, err := s.PresignGet(ctx, key, time.Minute, "x.txt")
			return err
		}},
	}
	forEachBackend(t, func(t *testing.T, b backend) {
		for _, m := range methods {
			for _, key := range keys {
				if err := m.call(t.Context(), b.store, key); !errors.Is(err, blob.ErrBadKey) {
					t.Errorf("%s(%q) = %v, want ErrBadKey", m.name, key, err)
				}
			}
		}
		// The longest key is fine. (In segments: versitygw's posix
		// backend makes each one a file name, at most 255 bytes.)
		long := strings.Repeat(strings.Repeat("a", 99)+"/", 5) + strings.Repeat("b", 12)
		if len(long) != blob.MaxKeyLen {
			t.Fatalf("long key has %d bytes", len(long))
		}
		put(t, b.store, long, []byte("x"), "")
	})
}

func TestConcurrentPuts(t *testing.T) {
	const n = 8
	forEachBackend(t, func(t *testing.T, b backend) {
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				data := randomBytes(uint64(100+i), 512<<10+i)
				key := fmt.Sprintf("concurrent/%d", i)
				info, err := b.store.Put(t.Context(), key, bytes.NewReader(data), 1<<20, "")
				if err != nil {
					t.Errorf("Put(%q): %v", key, err)
					return
				}
				if info.SHA256 != sha(data) {
					t.Errorf("Put(%q): sha256 %s, want %s", key, info.SHA256, sha(data))
				}
			})
		}
		wg.Wait()
		for i := range n {
			got, info := readAll(t, b.store, fmt.Sprintf("concurrent/%d", i))
			if want := randomBytes(uint64(100+i), 512<<10+i); !bytes.Equal(got, want) || info.SHA256 != sha(want) {
				t.Errorf("concurrent/%d: read %d bytes, info %+v", i, len(got), info)
			}
		}
	})
}

func TestPing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		if err := b.store.Ping(t.Context()); err != nil {
			t.Fatal(err)
		}
	})
}

func TestPresignLocal(t *testing.T) {
	s, err := blob.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	url, ok, err := s.PresignGet(t.Context(), "a/b", time.Minute, "отчёт.pdf")
	if url != "" || ok || err != nil {
		t.Fatalf("PresignGet = %q, %v, %v; want \"\", false, nil", url, ok, err)
	}
}

// The local store keeps its files inside its directory, with the modes
// NewLocal promises.
func TestLocalStaysInDir(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "store", "blobs")
	s, err := blob.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := st.Mode().Perm(); perm != 0o750 {
		t.Errorf("store dir mode %v, want 0750", perm)
	}
	info := put(t, s, "x/y", []byte("data"), "")
	var files []string
	filepath.WalkDir(parent, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files = append(files, p)
		}
		return err
	})
	if len(files) != 1 || !strings.HasPrefix(files[0], dir+string(filepath.Separator)) {
		t.Fatalf("files after one Put: %q", files)
	}
	fst, err := os.Stat(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if perm := fst.Mode().Perm(); perm != 0o640 {
		t.Errorf("object file mode %v, want 0640", perm)
	}
	if fst.Size() != info.Size {
		t.Errorf("object file holds %d bytes, want %d", fst.Size(), info.Size)
	}
}
