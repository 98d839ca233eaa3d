package blob

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"
)

// S3Options configures NewS3.
type S3Options struct {
	// Endpoint is host[:port] of the S3 service, without a scheme.
	Endpoint string
	// UseTLS selects https. CAFile, when set, is a PEM bundle trusted in
	// addition to the system roots (a private CA on site).
	UseTLS bool
	CAFile string
	// Region may be empty: the client then asks the service once.
	Region    string
	Bucket    string
	AccessKey string
	// SecretKey never appears in errors, logs or the String form of the
	// options.
	SecretKey string
	// PathStyle addresses the bucket as endpoint/bucket rather than
	// bucket.endpoint; most on-site S3 servers need it.
	PathStyle bool
	// CreateBucket makes NewS3 create the bucket when it is missing.
	CreateBucket bool
	// PartSize is the multipart part size and so the most memory one Put
	// holds; 0 means DefaultPartSize. Bodies shorter than one part are
	// sent in a single request.
	PartSize int64
	// Logger gets the rare problem that does not fail a call, such as a
	// temporary object that could not be removed; nil discards them.
	Logger *slog.Logger
}

const (
	// DefaultPartSize is S3Options.PartSize when unset.
	DefaultPartSize = 8 << 20
	// MinPartSize and MaxPartSize are S3's limits on a part (the last part
	// of an upload may be shorter).
	MinPartSize = 5 << 20
	MaxPartSize = 5 << 30
	maxParts    = 10000
	// maxCopySize is the largest object one CopyObject request copies;
	// larger ones are copied in parts.
	maxCopySize = 5 << 30
	// maxPresignTTL is S3's limit for a presigned URL (SigV4).
	maxPresignTTL = 7 * 24 * time.Hour
	// cleanupTimeout bounds removing what a failed Put left, which runs
	// even when the Put's context has ended.
	cleanupTimeout = 30 * time.Second
	// partialPrefix holds a large upload until its hash is known. Upper
	// case cannot occur in a valid key, so it never shadows an object.
	partialPrefix = "Partial/"
	// metaSHA256 is the user metadata (x-amz-meta-sha256) with the hash.
	metaSHA256 = "Sha256"
)

// String returns the options with SecretKey redacted, so a stray %v or
// %+v cannot print it.
func (o S3Options) String() string {
	type plain S3Options // no methods: no recursion
	p := plain(o)
	if p.SecretKey != "" {
		p.SecretKey = "REDACTED"
	}
	p.Logger = nil
	return fmt.Sprintf("%+v", p)
}

// GoString is String for %#v.
func (o S3Options) GoString() string { return "blob.S3Options" + o.String() }

// LogValue makes slog print the options without SecretKey.
func (o S3Options) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("endpoint", o.Endpoint),
		slog.Bool("tls", o.UseTLS),
		slog.String("ca_file", o.CAFile),
		slog.String("region", o.Region),
		slog.String("bucket", o.Bucket),
		slog.String("access_key", o.AccessKey),
		slog.Bool("secret_key_set", o.SecretKey != ""),
		slog.Bool("path_style", o.PathStyle),
		slog.Bool("create_bucket", o.CreateBucket),
		slog.Int64("part_size", o.PartSize),
	)
}

// S3 keeps objects in an S3 bucket. The object's SHA-256 is stored as user
// metadata x-amz-meta-sha256 and its content type as the object's own
// Content-Type, so presigned downloads are served with the right type.
type S3 struct {
	client   *minio.Client
	core     minio.Core
	bucket   string
	partSize int64
	log      *slog.Logger
}

var _ Store = (*S3)(nil)

// NewS3 returns a store on o.Bucket. It talks to the service only when
// o.CreateBucket is set; use Ping to check the bucket is reachable.
func NewS3(ctx context.Context, o S3Options) (*S3, error) {
	switch {
	case o.Endpoint == "":
		return nil, errors.New("blob: s3: no endpoint")
	case strings.Contains(o.Endpoint, "://"):
		return nil, fmt.Errorf("blob: s3: endpoint %q: want host[:port] without a scheme (UseTLS selects https)", o.Endpoint)
	case (o.AccessKey == "") != (o.SecretKey == ""):
		return nil, errors.New("blob: s3: set both or neither of access key and secret key")
	case o.CAFile != "" && !o.UseTLS:
		return nil, errors.New("blob: s3: a CA file needs UseTLS")
	}
	if err := s3utils.CheckValidBucketNameStrict(o.Bucket); err != nil {
		return nil, fmt.Errorf("blob: s3: bucket %q: %w", o.Bucket, err)
	}
	partSize := o.PartSize
	if partSize == 0 {
		partSize = DefaultPartSize
	}
	if partSize < MinPartSize || partSize > MaxPartSize {
		return nil, fmt.Errorf("blob: s3: part size %d outside [%d, %d]", partSize, MinPartSize, MaxPartSize)
	}
	tr, err := minio.DefaultTransport(o.UseTLS)
	if err != nil {
		return nil, fmt.Errorf("blob: s3: %w", err)
	}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("blob: s3: CA file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("blob: s3: CA file %s holds no PEM certificate", o.CAFile)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	lookup := minio.BucketLookupAuto
	if o.PathStyle {
		lookup = minio.BucketLookupPath
	}
	var creds *credentials.Credentials
	if o.AccessKey != "" {
		creds = credentials.NewStaticV4(o.AccessKey, o.SecretKey, "")
	} else {
		creds = credentials.NewStatic("", "", "", credentials.SignatureAnonymous)
	}
	client, err := minio.New(o.Endpoint, &minio.Options{
		Creds:        creds,
		Secure:       o.UseTLS,
		Transport:    tr,
		Region:       o.Region,
		BucketLookup: lookup,
	})
	if err != nil {
		return nil, fmt.Errorf("blob: s3: %w", err)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &S3{client: client, core: minio.Core{Client: client}, bucket: o.Bucket, partSize: partSize, log: log}
	if o.CreateBucket {
		if err := s.createBucket(ctx, o.Region); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *S3) createBucket(ctx context.Context, region string) error {
	ok, err := s.client.BucketExists(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("blob: s3: bucket %q: %w", s.bucket, err)
	}
	if ok {
		return nil
	}
	err = s.client.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{Region: region})
	// Another node may have created it in between.
	if err != nil && minio.ToErrorResponse(err).Code != minio.BucketAlreadyOwnedByYou {
		return fmt.Errorf("blob: s3: create bucket %q: %w", s.bucket, err)
	}
	return nil
}

// Put implements Store. A body shorter than one part is read into memory
// and sent in one request. A longer one is sent as a multipart upload to a
// temporary key under "Partial/", one part in memory at a time; once the
// whole body is in and its SHA-256 known, a server-side copy puts it under
// key with the hash in its metadata, and the temporary object is removed.
// (S3 fixes metadata when an upload starts, before the hash exists; the
// copy is what lets the final object carry it and appear whole.) A failed
// Put aborts the upload or removes the temporary object; one interrupted
// by a crash leaves debris under "Partial/" and incomplete multipart
// uploads, which a bucket lifecycle rule should expire.
func (s *S3) Put(ctx context.Context, key string, r io.Reader, maxSize int64, contentType string) (Info, error) {
	ct, err := checkPut(key, maxSize, contentType)
	if err != nil {
		return Info{}, err
	}
	// Parts must be big enough for maxSize to fit in S3's 10,000 (written
	// so that a huge maxSize cannot overflow).
	partSize := max(s.partSize, maxSize/maxParts+1)
	if partSize > MaxPartSize {
		return Info{}, fmt.Errorf("blob: put %q: maxSize %d is more than S3 can take", key, maxSize)
	}
	b := newBody(ctx, r, maxSize)
	buf, err := fill(b, make([]byte, 0, min(partSize, 64<<10)), int(partSize))
	if err != nil {
		return Info{}, fmt.Errorf("blob: put %q: %w", key, err)
	}
	ct = sniff(ct, buf)
	if int64(len(buf)) < partSize {
		// Core.PutObject takes the hash we already have rather than
		// hashing the body again to sign it.
		_, err = s.core.PutObject(ctx, s.bucket, key, bytes.NewReader(buf), int64(len(buf)), "", b.sum(), minio.PutObjectOptions{
			ContentType:  ct,
			UserMetadata: map[string]string{metaSHA256: b.sum()},
		})
	} else {
		err = s.putLarge(ctx, key, b, buf, int(partSize), ct)
	}
	if err != nil {
		if b.err != nil {
			// The body failed (too large, reader error, ctx); the S3
			// error only echoes that.
			err = b.err
		}
		return Info{}, fmt.Errorf("blob: put %q: %w", key, err)
	}
	info := Info{Key: key, Size: b.n, SHA256: b.sum(), ContentType: ct}
	// A PUT's answer has no Last-Modified (and a copy's has a finer one
	// than HEAD): ask, so the time is the one Stat and Open report.
	oi, err := s.client.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		// The object is stored; only its time is unknown.
		s.log.WarnContext(ctx, "blob: s3: stat after put", "bucket", s.bucket, "key", key, "err", err)
		info.ModTime = time.Now().UTC().Truncate(time.Second)
	} else {
		info.ModTime = oi.LastModified
	}
	return info, nil
}

// putLarge uploads the rest of b, whose first part is in buf, and puts it
// under key.
func (s *S3) putLarge(ctx context.Context, key string, b *body, buf []byte, partSize int, ct string) error {
	tmp := partialPrefix + randomHex()
	uploadID, err := s.core.NewMultipartUpload(ctx, s.bucket, tmp, minio.PutObjectOptions{ContentType: ct})
	if err != nil {
		return err
	}
	var parts []minio.CompletePart
	for n := 1; ; n++ {
		if n > 1 {
			if buf, err = fill(b, buf[:0], partSize); err != nil {
				break
			}
			if len(buf) == 0 {
				break // the previous part ended exactly at the end
			}
		}
		var p minio.ObjectPart
		p, err = s.core.PutObjectPart(ctx, s.bucket, tmp, uploadID, n, bytes.NewReader(buf), int64(len(buf)), minio.PutObjectPartOptions{})
		if err != nil {
			break
		}
		parts = append(parts, minio.CompletePart{
			PartNumber: n, ETag: p.ETag,
			ChecksumCRC32: p.ChecksumCRC32, ChecksumCRC32C: p.ChecksumCRC32C,
			ChecksumSHA1: p.ChecksumSHA1, ChecksumSHA256: p.ChecksumSHA256, ChecksumCRC64NVME: p.ChecksumCRC64NVME,
		})
		if len(buf) < partSize {
			break
		}
	}
	if err == nil {
		_, err = s.core.CompleteMultipartUpload(ctx, s.bucket, tmp, uploadID, parts, minio.PutObjectOptions{ContentType: ct})
	}
	if err != nil {
		s.cleanup(ctx, tmp, func(ctx context.Context) error { return s.core.AbortMultipartUpload(ctx, s.bucket, tmp, uploadID) })
		return err
	}
	defer s.cleanup(ctx, tmp, func(ctx context.Context) error {
		return s.client.RemoveObject(ctx, s.bucket, tmp, minio.RemoveObjectOptions{})
	})

	dst := minio.CopyDestOptions{
		Bucket: s.bucket, Object: key,
		ReplaceMetadata: true,
		// Content-Type in the metadata too: a copy in parts (over 5 GiB)
		// takes only the metadata map.
		UserMetadata: map[string]string{metaSHA256: b.sum(), "Content-Type": ct},
		ContentType:  ct,
	}
	src := minio.CopySrcOptions{Bucket: s.bucket, Object: tmp}
	if b.n <= maxCopySize {
		_, err = s.client.CopyObject(ctx, dst, src)
	} else {
		_, err = s.client.ComposeObject(ctx, dst, src)
	}
	if err != nil {
		return fmt.Errorf("copy from %s: %w", tmp, err)
	}
	return nil
}

// cleanup runs undo, which removes what a Put left under tmp, even when
// ctx has ended, and logs when it fails: the Put's own result stands.
func (s *S3) cleanup(ctx context.Context, tmp string, undo func(context.Context) error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if err := undo(ctx); err != nil {
		s.log.WarnContext(ctx, "blob: s3: temporary upload left behind", "bucket", s.bucket, "key", tmp, "err", err)
	}
}

// fill appends to buf from r until buf holds size bytes or r ends. It
// grows buf as data arrives, so a small body costs a small buffer.
func fill(r io.Reader, buf []byte, size int) ([]byte, error) {
	for len(buf) < size {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(max(cap(buf), 4096), size-len(buf)))
		}
		n, err := r.Read(buf[len(buf):min(cap(buf), size)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

func randomHex() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// Open implements Store. It returns the *minio.Object (seekable: a Seek
// makes the next Read a ranged GET, pinned to the ETag first seen) after
// its HEAD has answered, so a missing key is reported here.
func (s *S3) Open(ctx context.Context, key string) (Object, error) {
	if err := ValidKey(key); err != nil {
		return nil, err
	}
	obj, err := s.client.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, s.wrap("open", key, err)
	}
	oi, err := obj.Stat()
	if err != nil {
		obj.Close()
		return nil, s.wrap("open", key, err)
	}
	return &s3Object{Object: obj, info: infoOf(key, oi)}, nil
}

type s3Object struct {
	*minio.Object
	info Info
}

func (o *s3Object) Info() Info { return o.info }

func infoOf(key string, oi minio.ObjectInfo) Info {
	return Info{
		Key:         key,
		Size:        oi.Size,
		SHA256:      oi.Metadata.Get("X-Amz-Meta-" + metaSHA256),
		ContentType: oi.ContentType,
		ModTime:     oi.LastModified,
	}
}

// Stat implements Store.
func (s *S3) Stat(ctx context.Context, key string) (Info, error) {
	if err := ValidKey(key); err != nil {
		return Info{}, err
	}
	oi, err := s.client.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return Info{}, s.wrap("stat", key, err)
	}
	return infoOf(key, oi), nil
}

// Delete implements Store. S3 itself answers a delete of a missing key
// with success.
func (s *S3) Delete(ctx context.Context, key string) error {
	if err := ValidKey(key); err != nil {
		return err
	}
	err := s.client.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{})
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("blob: delete %q: %w", key, err)
	}
	return nil
}

// PresignGet implements Store: the URL is a SigV4 presigned GET, valid
// for ttl (1 s to 7 days), that the S3 service answers itself. It is
// computed locally and says nothing about whether the key exists.
func (s *S3) PresignGet(ctx context.Context, key string, ttl time.Duration, filename string) (string, bool, error) {
	if err := ValidKey(key); err != nil {
		return "", false, err
	}
	if ttl < time.Second || ttl > maxPresignTTL {
		return "", false, fmt.Errorf("blob: presign %q: ttl %v outside [1s, %v]", key, ttl, maxPresignTTL)
	}
	params := url.Values{}
	if filename != "" {
		params.Set("response-content-disposition", ContentDisposition(filename))
	}
	u, err := s.client.PresignedGetObject(ctx, s.bucket, key, ttl, params)
	if err != nil {
		return "", false, fmt.Errorf("blob: presign %q: %w", key, err)
	}
	return u.String(), true, nil
}

// Ping implements Store: the bucket must exist and the credentials work.
func (s *S3) Ping(ctx context.Context) error {
	ok, err := s.client.BucketExists(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("blob: s3: bucket %q: %w", s.bucket, err)
	}
	if !ok {
		return fmt.Errorf("blob: s3: bucket %q does not exist", s.bucket)
	}
	return nil
}

// wrap turns a missing object into ErrNotFound and wraps anything else.
func (s *S3) wrap(op, key string, err error) error {
	if isNotFound(err) {
		return fmt.Errorf("blob: %s %q: %w", op, key, ErrNotFound)
	}
	return fmt.Errorf("blob: %s %q: %w", op, key, err)
}

// isNotFound reports a missing object; a missing bucket is not one (it is
// a configuration error and must not look like an empty store). Stat and
// Open ask with HEAD, whose 404 has no body naming the cause, so there
// minio-go reports NoSuchKey for both; Ping tells them apart.
func isNotFound(err error) bool {
	return minio.ToErrorResponse(err).Code == minio.NoSuchKey
}
