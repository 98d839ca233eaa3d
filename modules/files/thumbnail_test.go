package files

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"runtime"
	"testing"
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

// testImage is a w×h image whose left half is red and right half blue.
func testImage(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			c := color.RGBA{R: 220, G: 20, B: 20, A: 255}
			if x >= w/2 {
				c = color.RGBA{R: 20, G: 20, B: 220, A: 255}
			}
			img.SetRGBA(x, y, c)
		}
	}
	return img
}

func encodePNG(t testing.TB, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func encodeJPEG(t testing.TB, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func encodeGIF(t testing.TB, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := gif.Encode(&b, img, nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// exifTIFF is the TIFF body of an Exif segment whose IFD0 holds only the
// orientation tag, in the byte order given.
func exifTIFF(order binary.ByteOrder, orientation uint16, typ uint16) []byte {
	var b bytes.Buffer
	if order == binary.LittleEndian {
		b.WriteString("II*\x00")
	} else {
		b.WriteString("MM\x00*")
	}
	w := func(v any) { binary.Write(&b, order, v) }
	w(uint32(8)) // IFD0 right after the header
	w(uint16(1)) // one entry
	w(uint16(0x0112))
	w(typ)
	w(uint32(1))
	w(orientation)
	w(uint16(0))
	w(uint32(0)) // no next IFD
	return b.Bytes()
}

// withSegment inserts an APPn segment right after a JPEG's SOI.
func withSegment(jpg []byte, marker byte, payload []byte) []byte {
	seg := []byte{0xFF, marker, 0, 0}
	binary.BigEndian.PutUint16(seg[2:], uint16(len(payload)+2))
	out := append([]byte{}, jpg[:2]...)
	out = append(out, seg...)
	out = append(out, payload...)
	return append(out, jpg[2:]...)
}

func withExif(jpg []byte, tiff []byte) []byte {
	return withSegment(jpg, 0xE1, append([]byte("Exif\x00\x00"), tiff...))
}

func TestJPEGOrientation(t *testing.T) {
	jpg := encodeJPEG(t, testImage(8, 8))
	xmp := append([]byte("http://ns.adobe.com/xap/1.0/\x00"), []byte("<x:xmpmeta/>")...)
	tests := []struct {
		name string
		data []byte
		want int
	}{
		{"no exif", jpg, 1},
		{"little endian 6", withExif(jpg, exifTIFF(binary.LittleEndian, 6, 3)), 6},
		{"big endian 8", withExif(jpg, exifTIFF(binary.BigEndian, 8, 3)), 8},
		{"after JFIF and XMP", withSegment(withSegment(withExif(jpg, exifTIFF(binary.BigEndian, 3, 3)), 0xE1, xmp), 0xE0, []byte("JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")), 3},
		{"out of range", withExif(jpg, exifTIFF(binary.LittleEndian, 9, 3)), 1},
		{"zero", withExif(jpg, exifTIFF(binary.LittleEndian, 0, 3)), 1},
		{"wrong type", withExif(jpg, exifTIFF(binary.LittleEndian, 6, 4)), 1},
		{"truncated tiff", withExif(jpg, exifTIFF(binary.LittleEndian, 6, 3)[:12]), 1},
		{"bad byte order", withExif(jpg, append([]byte("XX"), exifTIFF(binary.LittleEndian, 6, 3)[2:]...)), 1},
		{"IFD offset outside", withExif(jpg, []byte("II*\x00\xff\xff\x00\x00")), 1},
		{"not a jpeg", encodePNG(t, testImage(4, 4)), 1},
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
		{"png landscape", encodePNG(t, testImage(640, 480)), typePNG, 640, 480, 320, 240, typePNG},
		{"jpeg portrait", encodeJPEG(t, testImage(480, 960)), typeJPEG, 480, 960, 160, 320, typeJPEG},
		{"gif", encodeGIF(t, testImage(400, 400)), typeGIF, 400, 400, 320, 320, typePNG},
		{"small png kept", encodePNG(t, testImage(100, 50)), typePNG, 100, 50, 100, 50, typePNG},
		{"jpeg rotated by exif", withExif(encodeJPEG(t, testImage(400, 200)), exifTIFF(binary.LittleEndian, 6, 3)), typeJPEG, 200, 400, 160, 320, typeJPEG},
		{"content type with parameters", encodePNG(t, testImage(20, 10)), "image/png; x=y", 20, 10, 20, 10, typePNG},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := makeThumbnail(bytes.NewReader(tt.data), tt.contentType, 320, 40_000_000)
			if err != nil {
				t.Fatalf("makeThumbnail: %v", err)
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
	data := withExif(encodeJPEG(t, testImage(400, 200)), exifTIFF(binary.BigEndian, 6, 3))
	res, err := makeThumbnail(bytes.NewReader(data), typeJPEG, 320, 40_000_000)
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

// pngChunk encodes one PNG chunk with its CRC.
func pngChunk(typ string, data []byte) []byte {
	out := binary.BigEndian.AppendUint32(nil, uint32(len(data)))
	out = append(out, typ...)
	out = append(out, data...)
	return binary.BigEndian.AppendUint32(out, crc32.ChecksumIEEE(append([]byte(typ), data...)))
}

// bombPNG is a valid PNG header claiming w×h RGBA pixels, followed by a
// little compressed data: a few hundred bytes that would make a decoder
// allocate w×h×4 bytes.
func bombPNG(w, h uint32) []byte {
	ihdr := binary.BigEndian.AppendUint32(nil, w)
	ihdr = binary.BigEndian.AppendUint32(ihdr, h)
	ihdr = append(ihdr, 8, 6, 0, 0, 0) // 8-bit RGBA, no interlace
	var idat bytes.Buffer
	zw := zlib.NewWriter(&idat)
	zw.Write(make([]byte, 64<<10))
	zw.Close()
	out := []byte("\x89PNG\r\n\x1a\n")
	out = append(out, pngChunk("IHDR", ihdr)...)
	out = append(out, pngChunk("IDAT", idat.Bytes())...)
	return append(out, pngChunk("IEND", nil)...)
}

// withJPEGSize rewrites the frame size in a JPEG's SOF0 header.
func withJPEGSize(t testing.TB, jpg []byte, w, h uint16) []byte {
	t.Helper()
	out := append([]byte{}, jpg...)
	i := bytes.Index(out, []byte{0xFF, 0xC0})
	if i < 0 {
		t.Fatal("no SOF0 in the test JPEG")
	}
	binary.BigEndian.PutUint16(out[i+5:], h)
	binary.BigEndian.PutUint16(out[i+7:], w)
	return out
}

// withGIFSize rewrites a GIF's logical screen size.
func withGIFSize(g []byte, w, h uint16) []byte {
	out := append([]byte{}, g...)
	binary.LittleEndian.PutUint16(out[6:], w)
	binary.LittleEndian.PutUint16(out[8:], h)
	return out
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
		{"png 100000x100000", bombPNG(100000, 100000), typePNG, 40_000_000, 100000, 100000},
		{"jpeg 60000x60000", withJPEGSize(t, encodeJPEG(t, testImage(16, 16)), 60000, 60000), typeJPEG, 40_000_000, 60000, 60000},
		{"gif 65535x65535", withGIFSize(encodeGIF(t, testImage(16, 16)), 65535, 65535), typeGIF, 40_000_000, 65535, 65535},
		{"one pixel over a small limit", encodePNG(t, testImage(11, 10)), typePNG, 109, 11, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			res, err := makeThumbnail(bytes.NewReader(tt.data), tt.contentType, 320, tt.maxPixels)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, errTooManyPixels) {
				t.Fatalf("makeThumbnail: %v, want errTooManyPixels", err)
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
	good := encodePNG(t, testImage(10, 10))
	// The header is intact, the pixel data is cut short.
	truncated := good[:len(good)-40]
	tests := []struct {
		name         string
		data         []byte
		contentType  string
		wantW, wantH int
	}{
		{"truncated png", truncated, typePNG, 10, 10},
		{"not an image", []byte("hello, world"), typePNG, 0, 0},
		{"empty", nil, typeJPEG, 0, 0},
		{"zero size gif", withGIFSize(encodeGIF(t, testImage(4, 4)), 0, 0), typeGIF, 0, 0},
		{"unsupported type", good, "image/webp", 0, 0},
	}
	for _, tt := range tests {
		res, err := makeThumbnail(bytes.NewReader(tt.data), tt.contentType, 320, 40_000_000)
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
