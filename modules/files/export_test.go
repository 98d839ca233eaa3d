package files

// Image builders of the internal tests, for the HTTP tests in files_test.
var (
	TestImage    = testImage
	EncodePNG    = encodePNG
	EncodeJPEG   = encodeJPEG
	EncodeGIF    = encodeGIF
	BombPNG      = bombPNG
	WithExif     = withExif
	ExifTIFF     = exifTIFF
	WithJPEGSize = withJPEGSize
)
