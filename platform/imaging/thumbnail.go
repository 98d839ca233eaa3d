package imaging

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"mime"

	"golang.org/x/image/draw"
)

// Thumbnail formats: photos stay JPEG; PNG and GIF (drawings, screenshots,
// transparency) become PNG.
const (
	TypeJPEG = "image/jpeg"
	TypePNG  = "image/png"
	TypeGIF  = "image/gif"

	jpegQuality = 82
)

// ErrTooManyPixels: the image header claims more pixels than may be
// decoded. Decoding allocates for every pixel the header claims, so a few
// kilobytes of PNG can demand gigabytes (a decompression bomb).
var ErrTooManyPixels = errors.New("image has too many pixels to decode")

// Thumbnailable reports whether thumbnails are made for contentType.
func Thumbnailable(contentType string) bool {
	mt, _, _ := mime.ParseMediaType(contentType)
	return mt == TypeJPEG || mt == TypePNG || mt == TypeGIF
}

// Result is what Thumbnail learnt about an image.
type Result struct {
	// Width and Height are the image's size as it is displayed (Exif
	// orientation applied); 0 when the header could not be read.
	Width, Height int
	// Thumb is the encoded thumbnail, of type ThumbType; nil when none
	// was made.
	Thumb     []byte
	ThumbType string
}

// Thumbnail reads the image in r (of contentType, one of the
// Thumbnailable ones) and scales it to fit size×size. The header is read
// first and an image of more than maxPixels is refused before any pixel
// is decoded; the size is reported either way. r is read from the start
// up to three times (Exif, header, pixels).
func Thumbnail(r io.ReadSeeker, contentType string, size, maxPixels int) (Result, error) {
	var res Result
	mt, _, _ := mime.ParseMediaType(contentType)
	orientation := 1
	if mt == TypeJPEG {
		orientation = jpegOrientation(r)
		if _, err := r.Seek(0, io.SeekStart); err != nil {
			return res, err
		}
	}
	cfg, err := decodeConfig(bufio.NewReader(r), mt)
	if err != nil {
		return res, fmt.Errorf("image header: %w", err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return res, fmt.Errorf("image header: size %dx%d", cfg.Width, cfg.Height)
	}
	res.Width, res.Height = cfg.Width, cfg.Height
	if orientation >= 5 {
		res.Width, res.Height = cfg.Height, cfg.Width
	}
	if int64(cfg.Width)*int64(cfg.Height) > int64(maxPixels) {
		return res, fmt.Errorf("%dx%d: %w (limit %d)", cfg.Width, cfg.Height, ErrTooManyPixels, maxPixels)
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return res, err
	}
	src, err := decode(bufio.NewReader(r), mt)
	if err != nil {
		return res, fmt.Errorf("decode image: %w", err)
	}
	thumb := orient(scaleToFit(src, size), orientation)

	var buf bytes.Buffer
	res.ThumbType = TypePNG
	if mt == TypeJPEG {
		res.ThumbType = TypeJPEG
		err = jpeg.Encode(&buf, thumb, &jpeg.Options{Quality: jpegQuality})
	} else {
		err = png.Encode(&buf, thumb)
	}
	if err != nil {
		res.ThumbType = ""
		return res, fmt.Errorf("encode thumbnail: %w", err)
	}
	res.Thumb = buf.Bytes()
	return res, nil
}

// decodeConfig and decode call the decoder of the type the content was
// sniffed as, rather than image.Decode's registry, so no other decoder
// linked into the binary is ever fed uploads.
func decodeConfig(r io.Reader, mediaType string) (image.Config, error) {
	switch mediaType {
	case TypeJPEG:
		return jpeg.DecodeConfig(r)
	case TypePNG:
		return png.DecodeConfig(r)
	case TypeGIF:
		return gif.DecodeConfig(r)
	}
	return image.Config{}, fmt.Errorf("no decoder for %s", mediaType)
}

func decode(r io.Reader, mediaType string) (image.Image, error) {
	switch mediaType {
	case TypeJPEG:
		return jpeg.Decode(r)
	case TypePNG:
		return png.Decode(r)
	case TypeGIF:
		// The first frame of an animation.
		return gif.Decode(r)
	}
	return nil, fmt.Errorf("no decoder for %s", mediaType)
}

// fitSize is the size of a w×h image scaled so that its longer side is
// size, never enlarged, and never below one pixel.
func fitSize(w, h, size int) (int, int) {
	if w <= size && h <= size {
		return w, h
	}
	if w >= h {
		return size, max(1, int((int64(h)*int64(size)+int64(w)/2)/int64(w)))
	}
	return max(1, int((int64(w)*int64(size)+int64(h)/2)/int64(h))), size
}

// scaleToFit returns src scaled to fit size×size (Catmull-Rom, which
// averages over the whole area a thumbnail pixel covers when shrinking).
func scaleToFit(src image.Image, size int) *image.RGBA {
	b := src.Bounds()
	w, h := fitSize(b.Dx(), b.Dy(), size)
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.CatmullRom.Scale(dst, dst.Bounds(), src, b, draw.Src, nil)
	return dst
}

// orient turns an image stored with Exif orientation o (1 to 8) upright.
func orient(src *image.RGBA, o int) *image.RGBA {
	if o <= 1 || o > 8 {
		return src
	}
	w, h := src.Rect.Dx(), src.Rect.Dy()
	dw, dh := w, h
	if o >= 5 {
		dw, dh = h, w
	}
	dst := image.NewRGBA(image.Rect(0, 0, dw, dh))
	for y := range h {
		for x := range w {
			var dx, dy int
			switch o {
			case 2: // mirrored
				dx, dy = w-1-x, y
			case 3: // upside down
				dx, dy = w-1-x, h-1-y
			case 4: // mirrored upside down
				dx, dy = x, h-1-y
			case 5: // mirrored along the main diagonal
				dx, dy = y, x
			case 6: // rotate 90° clockwise
				dx, dy = h-1-y, x
			case 7: // mirrored along the other diagonal
				dx, dy = h-1-y, w-1-x
			case 8: // rotate 90° counter-clockwise
				dx, dy = y, w-1-x
			}
			si := src.PixOffset(src.Rect.Min.X+x, src.Rect.Min.Y+y)
			di := dst.PixOffset(dx, dy)
			copy(dst.Pix[di:di+4], src.Pix[si:si+4])
		}
	}
	return dst
}
