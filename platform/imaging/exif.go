package imaging

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
)

// maxJPEGHeader bounds how far jpegOrientation reads: the Exif segment
// sits right after SOI (or after a JFIF APP0), and a segment is at most
// 64 KiB, so a few segments in is as far as it can be.
const maxJPEGHeader = 256 << 10

// jpegOrientation returns the Exif orientation (1 to 8, TIFF tag 0x0112)
// of a JPEG, or 1 when it has none or the data cannot be read. Phones
// store photos as the sensor saw them and record the rotation here;
// viewers (and browsers) apply it, so a thumbnail must too or portrait
// photos show on their side.
func jpegOrientation(r io.Reader) int {
	br := bufio.NewReader(io.LimitReader(r, maxJPEGHeader))
	var soi [2]byte
	if _, err := io.ReadFull(br, soi[:]); err != nil || soi != [2]byte{0xFF, 0xD8} {
		return 1
	}
	for {
		marker, err := nextMarker(br)
		if err != nil {
			return 1
		}
		// Exif comes before the image data: stop at SOS, a frame header
		// (SOFn) or EOI.
		if marker == 0xDA || marker == 0xD9 || (marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC) {
			return 1
		}
		var l [2]byte
		if _, err := io.ReadFull(br, l[:]); err != nil {
			return 1
		}
		n := int(binary.BigEndian.Uint16(l[:])) - 2
		if n < 0 {
			return 1
		}
		if marker != 0xE1 {
			if _, err := br.Discard(n); err != nil {
				return 1
			}
			continue
		}
		seg := make([]byte, n)
		if _, err := io.ReadFull(br, seg); err != nil {
			return 1
		}
		if tiff, ok := bytes.CutPrefix(seg, []byte("Exif\x00\x00")); ok {
			return tiffOrientation(tiff)
		}
		// Another APP1 (XMP): the Exif one may still follow.
	}
}

// nextMarker reads up to and including the next marker and returns its
// code; fill bytes (0xFF runs) are skipped.
func nextMarker(br *bufio.Reader) (byte, error) {
	b, err := br.ReadByte()
	if err != nil {
		return 0, err
	}
	if b != 0xFF {
		return 0, io.ErrUnexpectedEOF
	}
	for b == 0xFF {
		if b, err = br.ReadByte(); err != nil {
			return 0, err
		}
	}
	return b, nil
}

// tiffOrientation finds the orientation tag in IFD0 of a TIFF structure
// (the body of an Exif segment). Anything out of place gives 1.
func tiffOrientation(tiff []byte) int {
	if len(tiff) < 8 {
		return 1
	}
	var order binary.ByteOrder
	switch string(tiff[:4]) {
	case "II*\x00":
		order = binary.LittleEndian
	case "MM\x00*":
		order = binary.BigEndian
	default:
		return 1
	}
	off := int64(order.Uint32(tiff[4:8]))
	if off < 8 || off+2 > int64(len(tiff)) {
		return 1
	}
	count := int64(order.Uint16(tiff[off:]))
	entries := tiff[off+2:]
	for i := range count {
		e := i * 12
		if e+12 > int64(len(entries)) {
			return 1
		}
		entry := entries[e : e+12]
		const tagOrientation, typeShort = 0x0112, 3
		if order.Uint16(entry[0:2]) != tagOrientation {
			continue
		}
		if order.Uint16(entry[2:4]) != typeShort || order.Uint32(entry[4:8]) != 1 {
			return 1
		}
		if v := int(order.Uint16(entry[8:10])); v >= 1 && v <= 8 {
			return v
		}
		return 1
	}
	return 1
}
