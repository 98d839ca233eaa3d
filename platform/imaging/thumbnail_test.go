package imaging

import (
	"bytes"
	"encoding/binary"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"runtime"
	"testing"

	"github.com/elph-server/elph/platform/imaging/imagingtest"
)

func TestFitSize(t *testing.T) {
	tests := []struct{ w, h, size, ww, wh int }{
		{640, 480, 320, 320, 240},
		{480, 640, 320, 240, 320},
		{320, 320, 320, 320, 320},
		{100, 50, 320, 100, 50}, // never enlarged
		{1000, 1, 320, 320, 1},  // never below a pixel
		{1, 100000, 320, 1, 320},
		{333, 1000, 100, 33, 100},
		{335, 1000, 100, 34, 100}, // rounded, not truncated
		{100000, 100000, 320, 320, 320},
	}
	for _, tt := range tests {
		if w, h := fitSize(tt.w, tt.h, tt.size); w != tt.ww || h != tt.wh {
			t.Errorf("fitSize(%d, %d, %d) = %dx%d, want %dx%d", tt.w, tt.h, tt.size, w, h, tt.ww, tt.wh)
		}
	}
}

func TestOrient(t *testing.T) {
	// A 3×2 image whose pixels are the letters A to F in their red channel:
	//   A B C
	//   D E F
	src := image.NewRGBA(image.Rect(0, 0, 3, 2))
	for i, c := range "ABCDEF" {
		src.SetRGBA(i%3, i/3, color.RGBA{R: uint8(c), A: 255})
	}
	read := func(img *image.RGBA) []string {
		var rows []string
		for y := range img.Rect.Dy() {
			var row []byte
			for x := range img.Rect.Dx() {
				row = append(row, img.RGBAAt(x, y).R)
			}
			rows = append(rows, string(row))
		}
		return rows
	}
	tests := []struct {
		o    int
		want []string
	}{
		{0, []string{"ABC", "DEF"}},
		{1, []string{"ABC", "DEF"}},
		{2, []string{"CBA", "FED"}},
		{3, []string{"FED", "CBA"}},
		{4, []string{"DEF", "ABC"}},
		{5, []string{"AD", "BE", "CF"}},
		{6, []string{"DA", "EB", "FC"}},
		{7, []string{"FC", "EB", "DA"}},
		{8, []string{"CF", "BE", "AD"}},
		{9, []string{"ABC", "DEF"}},
	}
	for _, tt := range tests {
		got := read(orient(src, tt.o))
		if len(got) != len(tt.want) {
			t.Errorf("orient(%d) = %q, want %q", tt.o, got, tt.want)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("orient(%d) = %q, want %q", tt.o, got, tt.want)
				break
			}
		}
	}
}

func TestJPEGOrientation(t *testing.T) {
	jpg := imagingtest.EncodeJPEG(t, imagingtest.Image(8, 8))
	xmp := append([]byte("http://ns.adobe.com/xap/1.0/\x00"), []byte("<x:xmpmeta/>")...)
	tests := []struct {
		name string
		data []byte
		want int
	}{
		{"no exif", jpg, 1},
		{"little endian 6", imagingtest.WithExif(jpg, imagingtest.ExifTIFF(binary.LittleEndian, 6, 3)), 6},
		{"big endian 8", imagingtest.WithExif(jpg, imagingtest.ExifTIFF(binary.BigEndian, 8, 3)), 8},
		{"after JFIF and XMP", imagingtest.WithSegment(imagingtest.WithSegment(imagingtest.WithExif(jpg, imagingtest.ExifTIFF(binary.BigEndian, 3, 3)), 0xE1, xmp), 0xE0, []byte("JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")), 3},
		{"out of range", imagingtest.WithExif(jpg, imagingtest.ExifTIFF(binary.LittleEndian, 9, 3)), 1},
		{"zero", imagingtest.WithExif(jpg, imagingtest.ExifTIFF(binary.LittleEndian, 0, 3)), 1},
		{"wrong type", imagingtest.WithExif(jpg, imagingtest.ExifTIFF(binary.LittleEndian, 6, 4)), 1},
		{"truncated tiff", imagingtest.WithExif(jpg, imagingtest.ExifTIFF(binary.LittleEndian, 6, 3)[:12]), 1},
		{"bad byte order", imagingtest.WithExif(jpg, append([]byte("XX"), imagingtest.ExifTIFF(binary.LittleEndian, 6, 3)[2:]...)), 1},
		{"IFD offset outside", imagingtest.WithExif(jpg, []byte("II*\x00\xff\xff\x00\x00")), 1},
		{"not a jpeg", imagingtest.EncodePNG(t, imagingtest.Image(4, 4)), 1},
		{"empty", nil, 1},
		{"only SOI", []byte{0xFF, 0xD8}, 1},
	}
	for _, tt := range tests {
		if got := jpegOrientation(bytes.NewReader(tt.data)); got != tt.want {
			t.Errorf("%s: jpegOrientation = %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestMakeThumbnail(t *testing.T) {
	tests := []struct {
		name           string
		data           []byte
		contentType    string
		wantW, wantH   int // the image's displayed size
		thumbW, thumbH int
		thumbType      string
	}{
		{"png landscape", imagingtest.EncodePNG(t, imagingtest.Image(640, 480)), TypePNG, 640, 480, 320, 240, TypePNG},
		{"jpeg portrait", imagingtest.EncodeJPEG(t, imagingtest.Image(480, 960)), TypeJPEG, 480, 960, 160, 320, TypeJPEG},
		{"gif", imagingtest.EncodeGIF(t, imagingtest.Image(400, 400)), TypeGIF, 400, 400, 320, 320, TypePNG},
		{"small png kept", imagingtest.EncodePNG(t, imagingtest.Image(100, 50)), TypePNG, 100, 50, 100, 50, TypePNG},
		{"jpeg rotated by exif", imagingtest.WithExif(imagingtest.EncodeJPEG(t, imagingtest.Image(400, 200)), imagingtest.ExifTIFF(binary.LittleEndian, 6, 3)), TypeJPEG, 200, 400, 160, 320, TypeJPEG},
		{"content type with parameters", imagingtest.EncodePNG(t, imagingtest.Image(20, 10)), "image/png; x=y", 20, 10, 20, 10, TypePNG},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Thumbnail(bytes.NewReader(tt.data), tt.contentType, 320, 40_000_000)
			if err != nil {
				t.Fatalf("Thumbnail: %v", err)
			}
			if res.Width != tt.wantW || res.Height != tt.wantH {
				t.Errorf("size %dx%d, want %dx%d", res.Width, res.Height, tt.wantW, tt.wantH)
			}
			if res.ThumbType != tt.thumbType {
				t.Errorf("thumbnail type %q, want %q", res.ThumbType, tt.thumbType)
			}
			img, format, err := image.Decode(bytes.NewReader(res.Thumb))
			if err != nil {
				t.Fatalf("decode thumbnail: %v", err)
			}
			if "image/"+format != tt.thumbType {
				t.Errorf("thumbnail is %s, labelled %s", format, tt.thumbType)
			}
			if b := img.Bounds(); b.Dx() != tt.thumbW || b.Dy() != tt.thumbH {
				t.Errorf("thumbnail %dx%d, want %dx%d", b.Dx(), b.Dy(), tt.thumbW, tt.thumbH)
			}
		})
	}
}

// TestMakeThumbnailOrientationPixels checks that an Exif-rotated photo's
// thumbnail is turned upright: the source's left half (red) must end up
// on top after a 90° clockwise turn, its right half (blue) below.
func TestMakeThumbnailOrientationPixels(t *testing.T) {
	data := imagingtest.WithExif(imagingtest.EncodeJPEG(t, imagingtest.Image(400, 200)), imagingtest.ExifTIFF(binary.BigEndian, 6, 3))
	res, err := Thumbnail(bytes.NewReader(data), TypeJPEG, 320, 40_000_000)
	if err != nil {
		t.Fatal(err)
	}
	img, err := jpeg.Decode(bytes.NewReader(res.Thumb))
	if err != nil {
		t.Fatal(err)
	}
	b := img.Bounds()
	isRed := func(c color.Color) bool { r, _, bl, _ := c.RGBA(); return r > 3*bl }
	isBlue := func(c color.Color) bool { r, _, bl, _ := c.RGBA(); return bl > 3*r }
	if top := img.At(b.Dx()/2, b.Dy()/8); !isRed(top) {
		t.Errorf("top of the thumbnail is %v, want red", top)
	}
	if bottom := img.At(b.Dx()/2, b.Dy()*7/8); !isBlue(bottom) {
		t.Errorf("bottom of the thumbnail is %v, want blue", bottom)
	}
}

// TestMakeThumbnailRefusesBombs checks that images whose headers claim
// more pixels than allowed are refused from the header alone: their size
// is reported, no thumbnail is made, and next to nothing is allocated
// (decoding a 100000×100000 PNG would take 40 GB).
func TestMakeThumbnailRefusesBombs(t *testing.T) {
	tests := []struct {
		name        string
		data        []byte
		contentType string
		maxPixels   int
		w, h        int
	}{
		{"png 100000x100000", imagingtest.BombPNG(100000, 100000), TypePNG, 40_000_000, 100000, 100000},
		{"jpeg 60000x60000", imagingtest.WithJPEGSize(t, imagingtest.EncodeJPEG(t, imagingtest.Image(16, 16)), 60000, 60000), TypeJPEG, 40_000_000, 60000, 60000},
		{"gif 65535x65535", imagingtest.WithGIFSize(imagingtest.EncodeGIF(t, imagingtest.Image(16, 16)), 65535, 65535), TypeGIF, 40_000_000, 65535, 65535},
		{"one pixel over a small limit", imagingtest.EncodePNG(t, imagingtest.Image(11, 10)), TypePNG, 109, 11, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			res, err := Thumbnail(bytes.NewReader(tt.data), tt.contentType, 320, tt.maxPixels)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, ErrTooManyPixels) {
				t.Fatalf("Thumbnail: %v, want ErrTooManyPixels", err)
			}
			if res.Thumb != nil || res.ThumbType != "" {
				t.Errorf("a thumbnail was made: %d bytes of %q", len(res.Thumb), res.ThumbType)
			}
			if res.Width != tt.w || res.Height != tt.h {
				t.Errorf("size %dx%d, want %dx%d", res.Width, res.Height, tt.w, tt.h)
			}
			// Reading a header takes a few kilobytes (buffers); a decode
			// would take gigabytes.
			if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
				t.Errorf("allocated %d bytes for a refused image", n)
			}
		})
	}
}

func TestMakeThumbnailBrokenImages(t *testing.T) {
	good := imagingtest.EncodePNG(t, imagingtest.Image(10, 10))
	// The header is intact, the pixel data is cut short.
	truncated := good[:len(good)-40]
	tests := []struct {
		name         string
		data         []byte
		contentType  string
		wantW, wantH int
	}{
		{"truncated png", truncated, TypePNG, 10, 10},
		{"not an image", []byte("hello, world"), TypePNG, 0, 0},
		{"empty", nil, TypeJPEG, 0, 0},
		{"zero size gif", imagingtest.WithGIFSize(imagingtest.EncodeGIF(t, imagingtest.Image(4, 4)), 0, 0), TypeGIF, 0, 0},
		{"unsupported type", good, "image/webp", 0, 0},
	}
	for _, tt := range tests {
		res, err := Thumbnail(bytes.NewReader(tt.data), tt.contentType, 320, 40_000_000)
		if err == nil {
			t.Errorf("%s: no error", tt.name)
		}
		if res.Thumb != nil {
			t.Errorf("%s: a thumbnail was made", tt.name)
		}
		if res.Width != tt.wantW || res.Height != tt.wantH {
			t.Errorf("%s: size %dx%d, want %dx%d", tt.name, res.Width, res.Height, tt.wantW, tt.wantH)
		}
	}
}
