// Package imagingtest builds images for tests: encoded JPEG, PNG and GIF
// pictures, Exif orientation segments, and hostile headers (decompression
// bombs, lying sizes).
package imagingtest

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"testing"
)

// Image is a w×h image whose left half is red and right half blue.
func Image(w, h int) *image.RGBA {
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

func EncodePNG(t testing.TB, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func EncodeJPEG(t testing.TB, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func EncodeGIF(t testing.TB, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := gif.Encode(&b, img, nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// ExifTIFF is the TIFF body of an Exif segment whose IFD0 holds only the
// orientation tag, in the byte order given.
func ExifTIFF(order binary.ByteOrder, orientation uint16, typ uint16) []byte {
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

// WithSegment inserts an APPn segment right after a JPEG's SOI.
func WithSegment(jpg []byte, marker byte, payload []byte) []byte {
	seg := []byte{0xFF, marker, 0, 0}
	binary.BigEndian.PutUint16(seg[2:], uint16(len(payload)+2))
	out := append([]byte{}, jpg[:2]...)
	out = append(out, seg...)
	out = append(out, payload...)
	return append(out, jpg[2:]...)
}

func WithExif(jpg []byte, tiff []byte) []byte {
	return WithSegment(jpg, 0xE1, append([]byte("Exif\x00\x00"), tiff...))
}

// PngChunk encodes one PNG chunk with its CRC.
func PngChunk(typ string, data []byte) []byte {
	out := binary.BigEndian.AppendUint32(nil, uint32(len(data)))
	out = append(out, typ...)
	out = append(out, data...)
	return binary.BigEndian.AppendUint32(out, crc32.ChecksumIEEE(append([]byte(typ), data...)))
}

// BombPNG is a valid PNG header claiming w×h RGBA pixels, followed by a
// little compressed data: a few hundred bytes that would make a decoder
// allocate w×h×4 bytes.
func BombPNG(w, h uint32) []byte {
	ihdr := binary.BigEndian.AppendUint32(nil, w)
	ihdr = binary.BigEndian.AppendUint32(ihdr, h)
	ihdr = append(ihdr, 8, 6, 0, 0, 0) // 8-bit RGBA, no interlace
	var idat bytes.Buffer
	zw := zlib.NewWriter(&idat)
	zw.Write(make([]byte, 64<<10))
	zw.Close()
	out := []byte("\x89PNG\r\n\x1a\n")
	out = append(out, PngChunk("IHDR", ihdr)...)
	out = append(out, PngChunk("IDAT", idat.Bytes())...)
	return append(out, PngChunk("IEND", nil)...)
}

// WithJPEGSize rewrites the frame size in a JPEG's SOF0 header.
func WithJPEGSize(t testing.TB, jpg []byte, w, h uint16) []byte {
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

// WithGIFSize rewrites a GIF's logical screen size.
func WithGIFSize(g []byte, w, h uint16) []byte {
	out := append([]byte{}, g...)
	binary.LittleEndian.PutUint16(out[6:], w)
	binary.LittleEndian.PutUint16(out[8:], h)
	return out
}
