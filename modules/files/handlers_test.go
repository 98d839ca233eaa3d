package files_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	_ "image/jpeg" // thumbnails are decoded by image.Decode
	_ "image/png"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/elph-server/elph/modules/files"
	"github.com/elph-server/elph/platform/blob"
	"github.com/elph-server/elph/platform/httpx"
	"github.com/elph-server/elph/platform/imaging/imagingtest"
)

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func contentPath(id string) string   { return "/files/v1/files/" + id + "/content" }
func thumbnailPath(id string) string { return "/files/v1/files/" + id + "/thumbnail" }
func metadataPath(id string) string  { return "/files/v1/files/" + id }

// wantAttachment checks that a download is offered to save as name,
// never shown, and not sniffed.
func wantAttachment(t testing.TB, r response, name string) {
	t.Helper()
	disp, params, err := mime.ParseMediaType(r.Header.Get("Content-Disposition"))
	if err != nil || disp != "attachment" || params["filename"] != name {
		t.Errorf("Content-Disposition %q parses to %q %q (%v), want attachment of %q",
			r.Header.Get("Content-Disposition"), disp, params, err, name)
	}
	if got := r.Header.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("X-Content-Type-Options %q, want nosniff", got)
	}
}

func TestUploadAndDownload(t *testing.T) {
	forEachEnv(t, envOptions{}, func(t *testing.T, e *env) {
		img := imagingtest.EncodePNG(t, imagingtest.Image(400, 300))
		const name = "снимок экрана.png"

		// Sent as text/plain, named by the query: the type comes from the
		// bytes.
		r := e.tryUpload(t, owner, "name="+url.QueryEscape(name), bytes.NewReader(img), "Content-Type", "text/plain")
		r.wantStatus(t, http.StatusCreated)
		f := r.file(t)
		want := fileJSON{ID: f.ID, Name: name, Size: int64(len(img)), ContentType: "image/png", SHA256: sha256Hex(img),
			OwnerID: owner, CreatedAt: f.CreatedAt, Width: 400, Height: 300, Thumbnail: true}
		if f != want {
			t.Errorf("upload answered\n %+v\nwant\n %+v", f, want)
		}
		if len(f.ID) != 22 || strings.Trim(f.ID, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
			t.Errorf("id %q is not 22 characters of base64url", f.ID)
		}
		if loc := r.Header.Get("Location"); loc != metadataPath(f.ID) {
			t.Errorf("Location %q, want %q", loc, metadataPath(f.ID))
		}

		meta := e.get(t, owner, metadataPath(f.ID))
		meta.wantStatus(t, http.StatusOK)
		if got := meta.file(t); got != f || !got.CreatedAt.Equal(f.CreatedAt) {
			t.Errorf("metadata\n %+v\nwant what the upload answered\n %+v", got, f)
		}

		dl := e.get(t, owner, contentPath(f.ID))
		dl.wantStatus(t, http.StatusOK)
		if !bytes.Equal(dl.Body, img) {
			t.Fatalf("downloaded %d bytes that differ from the %d uploaded", len(dl.Body), len(img))
		}
		wantAttachment(t, dl, name)
		etag := strconv.Quote(sha256Hex(img))
		for h, v := range map[string]string{"Content-Type": "image/png", "ETag": etag, "Accept-Ranges": "bytes",
			"Content-Length": strconv.Itoa(len(img)), "Cache-Control": "private, no-cache"} {
			if got := dl.Header.Get(h); got != v {
				t.Errorf("%s: %q, want %q", h, got, v)
			}
		}

		rng := e.get(t, owner, contentPath(f.ID), "Range", "bytes=2-5")
		rng.wantStatus(t, http.StatusPartialContent)
		if want := fmt.Sprintf("bytes 2-5/%d", len(img)); rng.Header.Get("Content-Range") != want {
			t.Errorf("Content-Range %q, want %q", rng.Header.Get("Content-Range"), want)
		}
		if !bytes.Equal(rng.Body, img[2:6]) {
			t.Errorf("range 2-5 = %x, want %x", rng.Body, img[2:6])
		}
		suffix := e.get(t, owner, contentPath(f.ID), "Range", "bytes=-7")
		suffix.wantStatus(t, http.StatusPartialContent)
		if !bytes.Equal(suffix.Body, img[len(img)-7:]) {
			t.Errorf("last 7 bytes = %x, want %x", suffix.Body, img[len(img)-7:])
		}

		cached := e.get(t, owner, contentPath(f.ID), "If-None-Match", etag)
		cached.wantStatus(t, http.StatusNotModified)
		if len(cached.Body) != 0 {
			t.Errorf("304 with a body of %d bytes", len(cached.Body))
		}
		stale := e.get(t, owner, contentPath(f.ID), "If-None-Match", `"`+strings.Repeat("0", 64)+`"`)
		stale.wantStatus(t, http.StatusOK)

		head := e.do(t, request{method: http.MethodHead, path: contentPath(f.ID), user: owner})
		head.wantStatus(t, http.StatusOK)
		if head.Header.Get("Content-Length") != strconv.Itoa(len(img)) || len(head.Body) != 0 {
			t.Errorf("HEAD: Content-Length %q and %d body bytes", head.Header.Get("Content-Length"), len(head.Body))
		}

		// Larger than the router's default body limit, no name, a
		// generic type.
		blobData := randomBytes(t, 300<<10)
		r = e.tryUpload(t, owner, "", bytes.NewReader(blobData), "Content-Type", "application/octet-stream")
		r.wantStatus(t, http.StatusCreated)
		big := r.file(t)
		if big.Name != files.DefaultName || big.ContentType != "application/octet-stream" || big.Size != int64(len(blobData)) ||
			big.SHA256 != sha256Hex(blobData) || big.Thumbnail || big.Width != 0 {
			t.Errorf("binary upload answered %+v", big)
		}
		if dl := e.get(t, owner, contentPath(big.ID)); dl.Status != http.StatusOK || !bytes.Equal(dl.Body, blobData) {
			t.Errorf("binary download: status %d, %d bytes, equal %v", dl.Status, len(dl.Body), bytes.Equal(dl.Body, blobData))
		}

		empty := e.upload(t, "empty.txt", nil)
		if empty.Size != 0 || empty.SHA256 != sha256Hex(nil) {
			t.Errorf("empty upload answered %+v", empty)
		}
		if dl := e.get(t, owner, contentPath(empty.ID)); dl.Status != http.StatusOK || len(dl.Body) != 0 {
			t.Errorf("empty download: %s", dl)
		}

		if got := e.counter(t, "elph_files_uploads_total", "result", "ok"); got != 3 {
			t.Errorf("uploads ok = %v, want 3", got)
		}
		if got, want := e.counter(t, "elph_files_uploaded_bytes_total"), float64(len(img)+len(blobData)); got != want {
			t.Errorf("uploaded bytes = %v, want %v", got, want)
		}
		// Every authorised content request: full, two ranges, two
		// conditional, HEAD, binary, empty.
		if got := e.counter(t, "elph_files_downloads_total"); got != 8 {
			t.Errorf("downloads = %v, want 8", got)
		}
	})
}

// unsized hides a reader's length, so the client sends it chunked and the
// server cannot refuse it on Content-Length.
type unsized struct{ io.Reader }

func TestUploadTooLarge(t *testing.T) {
	const limit = 100 << 10
	forEachEnv(t, envOptions{edit: func(o *files.Options) { o.MaxUploadBytes = limit }}, func(t *testing.T, e *env) {
		tests := []struct {
			name string
			body io.Reader
		}{
			{"content length one over", bytes.NewReader(make([]byte, limit+1))},
			{"chunked one over", unsized{bytes.NewReader(make([]byte, limit+1))}},
			{"chunked far over", unsized{bytes.NewReader(make([]byte, 3*limit))}},
			{"png chunked over", unsized{io.MultiReader(bytes.NewReader(imagingtest.EncodePNG(t, imagingtest.Image(8, 8))), bytes.NewReader(make([]byte, limit)))}},
		}
		for _, tt := range tests {
			r := e.tryUpload(t, owner, "name=big.bin", tt.body)
			r.wantError(t, http.StatusRequestEntityTooLarge, httpx.CodePayloadTooLarge)
			if n := e.rows(t); n != 0 {
				t.Errorf("%s: %d rows after a refused upload", tt.name, n)
			}
			if n := e.objects(t); n != 0 {
				t.Errorf("%s: %d blobs after a refused upload", tt.name, n)
			}
		}
		if got := e.counter(t, "elph_files_uploads_total", "result", "too_large"); got != float64(len(tests)) {
			t.Errorf("uploads too_large = %v, want %d", got, len(tests))
		}

		atLimit := randomBytes(t, limit)
		r := e.tryUpload(t, owner, "name=exact.bin", unsized{bytes.NewReader(atLimit)})
		r.wantStatus(t, http.StatusCreated)
		if f := r.file(t); f.Size != limit || f.SHA256 != sha256Hex(atLimit) {
			t.Errorf("upload of exactly the limit answered %+v", f)
		}
		if rows, objects := e.rows(t), e.objects(t); rows != 1 || objects != 1 {
			t.Errorf("after one upload: %d rows, %d blobs", rows, objects)
		}
	})
}

// TestUploadInterrupted cuts an upload off half way: nothing is kept.
func TestUploadInterrupted(t *testing.T) {
	forEachEnv(t, envOptions{}, func(t *testing.T, e *env) {
		conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "POST /files/v1/files?name=half.bin HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer %s\r\nContent-Length: 1000\r\n\r\n",
			e.iss.Token(t, owner, fmt.Sprintf("s-%d", owner), nil))
		conn.Write(make([]byte, 500))
		// The client is gone for writing: the server's read ends early.
		if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("read response: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("status %d, want 400", resp.StatusCode)
		}
		if rows, objects := e.rows(t), e.objects(t); rows != 0 || objects != 0 {
			t.Errorf("after an interrupted upload: %d rows, %d blobs", rows, objects)
		}
		if got := e.counter(t, "elph_files_uploads_total", "result", "bad_request"); got != 1 {
			t.Errorf("uploads bad_request = %v, want 1", got)
		}
	})
}

func TestUploadRefusesMultipart(t *testing.T) {
	forEachEnv(t, envOptions{}, func(t *testing.T, e *env) {
		body := "--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\r\n\r\nhello\r\n--b--\r\n"
		r := e.tryUpload(t, owner, "", strings.NewReader(body), "Content-Type", "multipart/form-data; boundary=b")
		r.wantError(t, http.StatusUnsupportedMediaType, httpx.CodeUnsupportedMedia)
		if rows, objects := e.rows(t), e.objects(t); rows != 0 || objects != 0 {
			t.Errorf("after a refused upload: %d rows, %d blobs", rows, objects)
		}
	})
}

func TestAccessControl(t *testing.T) {
	forEachEnv(t, envOptions{}, func(t *testing.T, e *env) {
		f := e.upload(t, "photo.png", imagingtest.EncodePNG(t, imagingtest.Image(64, 48)))
		e.access.allow(friend, f.ID)
		other := e.upload(t, "other.png", imagingtest.EncodePNG(t, imagingtest.Image(64, 48)))

		paths := []string{metadataPath(f.ID), contentPath(f.ID), thumbnailPath(f.ID), contentPath(f.ID) + "?redirect=1"}
		tests := []struct {
			name   string
			user   int64
			status int
			code   string
		}{
			{"owner", owner, http.StatusOK, ""},
			{"member of a conversation with the file", friend, http.StatusOK, ""},
			{"stranger", stranger, http.StatusNotFound, httpx.CodeNotFound},
			{"access check failing", broken, http.StatusInternalServerError, httpx.CodeInternal},
			{"no token", 0, http.StatusUnauthorized, httpx.CodeUnauthorized},
		}
		for _, tt := range tests {
			for _, p := range paths {
				r := e.get(t, tt.user, p)
				if tt.code == "" {
					if r.Status != tt.status && !(r.Status == http.StatusFound && strings.Contains(p, "redirect")) {
						t.Errorf("%s: GET %s = %s, want %d", tt.name, p, r, tt.status)
					}
					continue
				}
				if r.Status != tt.status {
					t.Errorf("%s: GET %s = %s, want %d %s", tt.name, p, r, tt.status, tt.code)
					continue
				}
				r.wantError(t, tt.status, tt.code)
			}
		}

		// A grant is for one file: the friend sees nothing else.
		e.get(t, friend, metadataPath(other.ID)).wantError(t, http.StatusNotFound, httpx.CodeNotFound)
		// Ids that are malformed or unknown look the same as forbidden ones.
		for _, id := range []string{"nope", strings.Repeat("A", 22), f.ID + "x", strings.ToLower(f.ID)} {
			if id == f.ID {
				continue
			}
			e.get(t, owner, metadataPath(url.PathEscape(id))).wantError(t, http.StatusNotFound, httpx.CodeNotFound)
		}

		// Only the owner deletes: the friend is told no, the stranger
		// learns nothing.
		del := func(user int64) response {
			return e.do(t, request{method: http.MethodDelete, path: metadataPath(f.ID), user: user})
		}
		del(friend).wantError(t, http.StatusForbidden, httpx.CodeForbidden)
		del(stranger).wantError(t, http.StatusNotFound, httpx.CodeNotFound)
		del(0).wantError(t, http.StatusUnauthorized, httpx.CodeUnauthorized)
		e.get(t, owner, metadataPath(f.ID)).wantStatus(t, http.StatusOK)
		e.tryUpload(t, 0, "", strings.NewReader("x")).wantError(t, http.StatusUnauthorized, httpx.CodeUnauthorized)
	})
}

// TestAccessWithoutChat: with no Access wired in, only uploaders read.
func TestAccessWithoutChat(t *testing.T) {
	forEachEnv(t, envOptions{noAccess: true}, func(t *testing.T, e *env) {
		f := e.upload(t, "a.txt", []byte("hello"))
		e.get(t, owner, contentPath(f.ID)).wantStatus(t, http.StatusOK)
		for _, user := range []int64{friend, stranger, broken} {
			e.get(t, user, contentPath(f.ID)).wantError(t, http.StatusNotFound, httpx.CodeNotFound)
			if _, err := e.mod.Attachable(t.Context(), user, f.ID); !errors.Is(err, files.ErrNotFound) {
				t.Errorf("Attachable(%d): %v, want ErrNotFound", user, err)
			}
		}
	})
}

// TestActiveContentIsNotServedAsIs: what a browser would run (HTML, XML,
// SVG) downloads as opaque bytes, as an attachment, with our server and
// with S3's presigned URL alike.
func TestActiveContentIsNotServedAsIs(t *testing.T) {
	forEachEnv(t, envOptions{}, func(t *testing.T, e *env) {
		tests := []struct {
			name, hint string
			data       string
			detected   string
			served     string
		}{
			{"page.html", "text/html", "<!DOCTYPE html><html><script>alert(document.cookie)</script></html>", "text/html; charset=utf-8", "application/octet-stream"},
			{"page.htm", "text/plain", "<html><body onload=alert(1)>", "text/html; charset=utf-8", "application/octet-stream"},
			{"data.xml", "", `<?xml version="1.0"?><?xml-stylesheet href="x.xsl"?><a/>`, "text/xml; charset=utf-8", "application/octet-stream"},
			{"logo.svg", "image/svg+xml", `<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>`, "text/plain; charset=utf-8", "text/plain; charset=utf-8"},
			{"notes.txt", "", "just text", "text/plain; charset=utf-8", "text/plain; charset=utf-8"},
		}
		for _, tt := range tests {
			var header []string
			if tt.hint != "" {
				header = []string{"Content-Type", tt.hint}
			}
			f := e.upload(t, tt.name, []byte(tt.data), header...)
			if f.ContentType != tt.detected {
				t.Errorf("%s: content_type %q, want %q", tt.name, f.ContentType, tt.detected)
			}
			dl := e.get(t, owner, contentPath(f.ID))
			dl.wantStatus(t, http.StatusOK)
			if ct := dl.Header.Get("Content-Type"); ct != tt.served {
				t.Errorf("%s: served as %q, want %q", tt.name, ct, tt.served)
			}
			wantAttachment(t, dl, tt.name)
			if csp := dl.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "sandbox") {
				t.Errorf("%s: Content-Security-Policy %q, want a sandbox", tt.name, csp)
			}
			if e.backend != "s3" {
				continue
			}
			redirect := e.get(t, owner, contentPath(f.ID)+"?redirect=1")
			redirect.wantStatus(t, http.StatusFound)
			s3 := fetch(t, redirect.Header.Get("Location"))
			if ct := s3.Header.Get("Content-Type"); ct != tt.served {
				t.Errorf("%s: S3 serves it as %q, want %q", tt.name, ct, tt.served)
			}
			if disp, _, _ := mime.ParseMediaType(s3.Header.Get("Content-Disposition")); disp != "attachment" {
				t.Errorf("%s: S3 Content-Disposition %q, want an attachment", tt.name, s3.Header.Get("Content-Disposition"))
			}
		}
	})
}

// fetch GETs an absolute URL with a plain client, as a browser following
// a redirect would: no token.
func fetch(t testing.TB, u string) response {
	t.Helper()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
	if err != nil {
		t.Fatalf("%q: %v", u, err)
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

func TestFileNames(t *testing.T) {
	forEachEnv(t, envOptions{}, func(t *testing.T, e *env) {
		long := strings.Repeat("ж", 300) + ".txt"
		tests := []struct {
			name   string
			query  string
			header []string
			want   string
		}{
			{"cyrillic in the query", "name=" + url.QueryEscape("Отчёт за май (итог).xlsx"), nil, "Отчёт за май (итог).xlsx"},
			{"cyrillic in Content-Disposition", "", []string{"Content-Disposition", "attachment; filename*=UTF-8''%D0%BF%D1%80%D0%B8%D0%BA%D0%B0%D0%B7%20%E2%84%961.pdf"}, "приказ №1.pdf"},
			{"plain Content-Disposition", "", []string{"Content-Disposition", `attachment; filename="plain.txt"`}, "plain.txt"},
			{"query before header", "name=query.txt", []string{"Content-Disposition", `attachment; filename="header.txt"`}, "query.txt"},
			{"path parts dropped", "name=" + url.QueryEscape("../../etc/passwd"), nil, "passwd"},
			{"windows path", "name=" + url.QueryEscape(`C:\Users\Иван\Desktop\план.docx`), nil, "план.docx"},
			{"no name", "", nil, files.DefaultName},
			{"quotes and percent", "name=" + url.QueryEscape(`say "hi" 100%.txt`), nil, `say "hi" 100%.txt`},
			{"too long", "name=" + url.QueryEscape(long), nil, strings.Repeat("ж", files.MaxNameChars-4) + ".txt"},
		}
		for _, tt := range tests {
			r := e.tryUpload(t, owner, tt.query, strings.NewReader("content of "+tt.name), tt.header...)
			r.wantStatus(t, http.StatusCreated)
			f := r.file(t)
			if f.Name != tt.want {
				t.Errorf("%s: name %q, want %q", tt.name, f.Name, tt.want)
			}
			if got := e.get(t, owner, metadataPath(f.ID)).file(t).Name; got != tt.want {
				t.Errorf("%s: stored name %q, want %q", tt.name, got, tt.want)
			}
			wantAttachment(t, e.get(t, owner, contentPath(f.ID)), tt.want)
		}
	})
}

// thumbnail fetches a file's thumbnail and decodes it.
func (e *env) thumbnail(t testing.TB, user int64, id string) (image.Config, string, response) {
	t.Helper()
	r := e.get(t, user, thumbnailPath(id))
	r.wantStatus(t, http.StatusOK)
	cfg, format, err := image.DecodeConfig(bytes.NewReader(r.Body))
	if err != nil {
		t.Fatalf("decode thumbnail: %v", err)
	}
	return cfg, format, r
}

func TestThumbnails(t *testing.T) {
	// Small thumbnails of small images: the scaling itself is tested in
	// TestMakeThumbnail, and is slow under the race detector.
	small := envOptions{edit: func(o *files.Options) { o.ThumbnailSize = 64 }}
	forEachEnv(t, small, func(t *testing.T, e *env) {
		tests := []struct {
			name           string
			data           []byte
			width, height  int
			thumbW, thumbH int
			thumbType      string
		}{
			{"landscape.png", imagingtest.EncodePNG(t, imagingtest.Image(160, 120)), 160, 120, 64, 48, "image/png"},
			{"portrait.jpg", imagingtest.EncodeJPEG(t, imagingtest.Image(120, 240)), 120, 240, 32, 64, "image/jpeg"},
			{"anim.gif", imagingtest.EncodeGIF(t, imagingtest.Image(100, 100)), 100, 100, 64, 64, "image/png"},
			{"icon.png", imagingtest.EncodePNG(t, imagingtest.Image(40, 20)), 40, 20, 40, 20, "image/png"},
			{"phone.jpg", imagingtest.WithExif(imagingtest.EncodeJPEG(t, imagingtest.Image(100, 50)), imagingtest.ExifTIFF(binary.LittleEndian, 6, 3)), 50, 100, 32, 64, "image/jpeg"},
		}
		for _, tt := range tests {
			f := e.upload(t, tt.name, tt.data)
			if !f.Thumbnail || f.Width != tt.width || f.Height != tt.height {
				t.Errorf("%s: thumbnail %v, size %dx%d; want a thumbnail and %dx%d", tt.name, f.Thumbnail, f.Width, f.Height, tt.width, tt.height)
				continue
			}
			cfg, format, r := e.thumbnail(t, owner, f.ID)
			if cfg.Width != tt.thumbW || cfg.Height != tt.thumbH || "image/"+format != tt.thumbType {
				t.Errorf("%s: thumbnail is a %dx%d %s, want %dx%d %s", tt.name, cfg.Width, cfg.Height, format, tt.thumbW, tt.thumbH, tt.thumbType)
			}
			if ct := r.Header.Get("Content-Type"); ct != tt.thumbType {
				t.Errorf("%s: thumbnail served as %q, want %q", tt.name, ct, tt.thumbType)
			}
			if etag := r.Header.Get("ETag"); etag == "" {
				t.Errorf("%s: thumbnail without an ETag", tt.name)
			} else {
				e.get(t, owner, thumbnailPath(f.ID), "If-None-Match", etag).wantStatus(t, http.StatusNotModified)
			}
		}
		// Each image is two blobs: the content and its thumbnail.
		if n := e.objects(t); n != 2*len(tests) {
			t.Errorf("%d blobs for %d images with thumbnails", n, len(tests))
		}

		// Files that are not images have no thumbnail.
		txt := e.upload(t, "a.txt", []byte("hello"))
		if txt.Thumbnail || txt.Width != 0 || txt.Height != 0 {
			t.Errorf("text file answered %+v", txt)
		}
		e.get(t, owner, thumbnailPath(txt.ID)).wantError(t, http.StatusNotFound, httpx.CodeNotFound)
	})
}

// TestThumbnailRefusals: images that must not or cannot be decoded are
// stored all the same, without a thumbnail.
func TestThumbnailRefusals(t *testing.T) {
	forEachEnv(t, envOptions{}, func(t *testing.T, e *env) {
		tests := []struct {
			name          string
			data          []byte
			hint          string
			contentType   string
			width, height int
		}{
			// A few hundred bytes whose header claims 10^10 pixels.
			{"bomb.png", imagingtest.BombPNG(100000, 100000), "", "image/png", 100000, 100000},
			{"bomb.jpg", imagingtest.WithJPEGSize(t, imagingtest.EncodeJPEG(t, imagingtest.Image(16, 16)), 60000, 60000), "", "image/jpeg", 60000, 60000},
			{"truncated.png", imagingtest.EncodePNG(t, imagingtest.Image(300, 200))[:60], "", "image/png", 300, 200},
			{"fake.png", randomBytes(t, 2048), "image/png", "image/png", 0, 0},
		}
		for _, tt := range tests {
			var header []string
			if tt.hint != "" {
				header = []string{"Content-Type", tt.hint}
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			f := e.upload(t, tt.name, tt.data, header...)
			runtime.ReadMemStats(&after)
			// The request, the blob store and the header read take a few
			// megabytes at most; decoding the bombs would take gigabytes.
			if n := after.TotalAlloc - before.TotalAlloc; n > 64<<20 {
				t.Errorf("%s: the upload allocated %d MiB", tt.name, n>>20)
			}
			if f.Thumbnail || f.ContentType != tt.contentType || f.Width != tt.width || f.Height != tt.height {
				t.Errorf("%s: answered %+v, want %s %dx%d without a thumbnail", tt.name, f, tt.contentType, tt.width, tt.height)
			}
			if _, thumb := e.blobKeys(t, f.ID); thumb != "" {
				t.Errorf("%s: thumb_key %q", tt.name, thumb)
			}
			e.get(t, owner, thumbnailPath(f.ID)).wantError(t, http.StatusNotFound, httpx.CodeNotFound)
			if dl := e.get(t, owner, contentPath(f.ID)); !bytes.Equal(dl.Body, tt.data) {
				t.Errorf("%s: download differs from the upload (%s)", tt.name, dl)
			}
		}
		if n := e.objects(t); n != len(tests) {
			t.Errorf("%d blobs for %d files without thumbnails", n, len(tests))
		}
	})
}

// TestConcurrentImageUploads makes images queue for the decoding slots.
func TestConcurrentImageUploads(t *testing.T) {
	small := envOptions{edit: func(o *files.Options) { o.ThumbnailSize = 64 }}
	forEachEnv(t, small, func(t *testing.T, e *env) {
		const n = 6
		img := imagingtest.EncodeJPEG(t, imagingtest.Image(200, 150))
		var wg sync.WaitGroup
		results := make([]response, n)
		for i := range n {
			wg.Go(func() {
				results[i] = e.tryUpload(t, owner, fmt.Sprintf("name=%d.jpg", i), bytes.NewReader(img))
			})
		}
		wg.Wait()
		for i, r := range results {
			if r.Status != http.StatusCreated {
				t.Errorf("upload %d: %s", i, r)
				continue
			}
			if f := r.file(t); !f.Thumbnail || f.Width != 200 {
				t.Errorf("upload %d answered %+v", i, f)
			}
		}
		if rows, objects := e.rows(t), e.objects(t); rows != n || objects != 2*n {
			t.Errorf("%d rows and %d blobs for %d images", rows, objects, n)
		}
	})
}

func TestDelete(t *testing.T) {
	forEachEnv(t, envOptions{}, func(t *testing.T, e *env) {
		f := e.upload(t, "doomed.png", imagingtest.EncodePNG(t, imagingtest.Image(64, 64)))
		keep := e.upload(t, "kept.txt", []byte("stays"))
		e.access.allow(friend, f.ID)
		content, thumb := e.blobKeys(t, f.ID)
		if thumb == "" {
			t.Fatal("no thumbnail to delete")
		}

		r := e.do(t, request{method: http.MethodDelete, path: metadataPath(f.ID), user: owner})
		r.wantStatus(t, http.StatusNoContent)

		for _, user := range []int64{owner, friend} {
			for _, p := range []string{metadataPath(f.ID), contentPath(f.ID), thumbnailPath(f.ID), contentPath(f.ID) + "?redirect=1"} {
				e.get(t, user, p).wantError(t, http.StatusNotFound, httpx.CodeNotFound)
			}
		}
		e.do(t, request{method: http.MethodDelete, path: metadataPath(f.ID), user: owner}).wantError(t, http.StatusNotFound, httpx.CodeNotFound)
		for _, key := range []string{content, thumb} {
			if _, err := e.blob.Stat(t.Context(), key); !errors.Is(err, blob.ErrNotFound) {
				t.Errorf("blob %s after delete: %v, want ErrNotFound", key, err)
			}
		}
		if _, err := e.mod.Attachable(t.Context(), owner, f.ID); !errors.Is(err, files.ErrNotFound) {
			t.Errorf("Attachable after delete: %v, want ErrNotFound", err)
		}
		// The other file is untouched.
		if rows, objects := e.rows(t), e.objects(t); rows != 1 || objects != 1 {
			t.Errorf("after delete: %d rows, %d blobs; want the other file's 1 and 1", rows, objects)
		}
		if dl := e.get(t, owner, contentPath(keep.ID)); string(dl.Body) != "stays" {
			t.Errorf("the other file: %s", dl)
		}
	})
}

// TestRedirect: with ?redirect=1, S3 hands out a presigned URL that
// downloads the bytes without a token; local storage streams instead.
func TestRedirect(t *testing.T) {
	forEachEnv(t, envOptions{}, func(t *testing.T, e *env) {
		data := append([]byte("%PDF-1.7\n"), randomBytes(t, 200<<10)...)
		const name = "договор №7.pdf"
		f := e.upload(t, name, data)
		e.access.allow(friend, f.ID)

		for _, user := range []int64{owner, friend} {
			r := e.get(t, user, contentPath(f.ID)+"?redirect=1")
			if e.backend == "local" {
				r.wantStatus(t, http.StatusOK)
				if !bytes.Equal(r.Body, data) {
					t.Errorf("streamed %d bytes that differ from the %d uploaded", len(r.Body), len(data))
				}
				wantAttachment(t, r, name)
				continue
			}
			r.wantStatus(t, http.StatusFound)
			if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("redirect Cache-Control %q, want no-store", cc)
			}
			loc := r.Header.Get("Location")
			u, err := url.Parse(loc)
			if err != nil || u.Host != e.gw.Endpoint || !strings.Contains(u.RawQuery, "X-Amz-Signature=") {
				t.Fatalf("Location %q is not a presigned URL of the S3 server %s", loc, e.gw.Endpoint)
			}
			dl := fetch(t, loc)
			dl.wantStatus(t, http.StatusOK)
			if !bytes.Equal(dl.Body, data) {
				t.Errorf("S3 served %d bytes that differ from the %d uploaded", len(dl.Body), len(data))
			}
			if ct := dl.Header.Get("Content-Type"); ct != "application/pdf" {
				t.Errorf("S3 Content-Type %q, want application/pdf", ct)
			}
			if _, params, err := mime.ParseMediaType(dl.Header.Get("Content-Disposition")); err != nil || params["filename"] != name {
				t.Errorf("S3 Content-Disposition %q, want the file's name", dl.Header.Get("Content-Disposition"))
			}
		}
		e.get(t, stranger, contentPath(f.ID)+"?redirect=1").wantError(t, http.StatusNotFound, httpx.CodeNotFound)
		if got := e.counter(t, "elph_files_downloads_total"); got != 2 {
			t.Errorf("downloads = %v, want 2", got)
		}
	})
}

func TestAttachable(t *testing.T) {
	forEachEnv(t, envOptions{}, func(t *testing.T, e *env) {
		img := e.upload(t, "снимок.png", imagingtest.EncodePNG(t, imagingtest.Image(300, 200)))
		doc := e.upload(t, "doc.txt", []byte("text"))
		e.access.allow(friend, img.ID)
		ctx := t.Context()

		want := files.Ref{ID: img.ID, Name: "снимок.png", ContentType: "image/png", Size: img.Size, Width: 300, Height: 200, Thumbnail: true}
		for _, user := range []int64{owner, friend} {
			got, err := e.mod.Attachable(ctx, user, img.ID)
			if err != nil || got != want {
				t.Errorf("Attachable(%d, image) = %+v, %v; want %+v", user, got, err, want)
			}
		}
		if got, err := e.mod.Attachable(ctx, owner, doc.ID); err != nil || got != (files.Ref{ID: doc.ID, Name: "doc.txt", ContentType: "text/plain; charset=utf-8", Size: 4}) {
			t.Errorf("Attachable(owner, doc) = %+v, %v", got, err)
		}
		for _, tt := range []struct {
			user int64
			id   string
		}{{stranger, img.ID}, {friend, doc.ID}, {owner, strings.Repeat("A", 22)}, {owner, "short"}, {owner, ""}} {
			if _, err := e.mod.Attachable(ctx, tt.user, tt.id); !errors.Is(err, files.ErrNotFound) {
				t.Errorf("Attachable(%d, %q): %v, want ErrNotFound", tt.user, tt.id, err)
			}
		}
		if _, err := e.mod.Attachable(ctx, broken, img.ID); !errors.Is(err, errAccessDown) {
			t.Errorf("Attachable with a failing access check: %v, want the check's error", err)
		}
	})
}
