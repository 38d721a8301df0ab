/*
 * error.c - error codes and their strings, the version, and logging through
 * the application's callback.  Calls nothing else in libckpt.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "internal.h"

CKPT_API int ckpt_version(const char **str)
{
	if (str)
		*str = CKPT_VERSION_STRING;
	return CKPT_VERSION_NUMBER;
}

struct err_desc {
	int code;
	const char *name;
	const char *msg;
};

/* Library codes first, then the errno values libckpt returns.  A static
 * table (no strerror_r, no locale) keeps ckpt_strerror() async-signal-safe. */
static const struct err_desc errs[] = {
	{0, "OK", "success"},
	{CKPT_E_KERNEL, "CKPT_E_KERNEL", "the running kernel lacks a behaviour libckpt needs (see ckpt kcheck; use the fork backend)"},
	{CKPT_E_NOTIMAGE, "CKPT_E_NOTIMAGE", "not a libckpt image"},
	{CKPT_E_VERSION, "CKPT_E_VERSION", "unsupported image format version"},
	{CKPT_E_CORRUPT, "CKPT_E_CORRUPT", "image is corrupt (checksum or structure check failed)"},
	{CKPT_E_TRUNCATED, "CKPT_E_TRUNCATED", "image is truncated"},
	{CKPT_E_PAGESIZE, "CKPT_E_PAGESIZE", "image page size differs from this system's"},
	{CKPT_E_ADDRINUSE, "CKPT_E_ADDRINUSE", "heap base address range is not free in this process"},
	{CKPT_E_PARENT, "CKPT_E_PARENT", "incremental image's parent is missing or does not match"},
	{CKPT_E_CANCELED, "CKPT_E_CANCELED", "checkpoint was cancelled"},
	{CKPT_E_FAILED, "CKPT_E_FAILED", "heap is in a failed state after an unrecoverable error"},
	{CKPT_E_RANGE, "CKPT_E_RANGE", "address range is outside the user address space"},
	{CKPT_E_APPTAG, "CKPT_E_APPTAG", "image was made by another application build (application tag differs)"},
	{-EPERM, "EPERM", "operation not permitted"},
	{-ENOENT, "ENOENT", "no such file, directory or checkpoint"},
	{-EINTR, "EINTR", "interrupted"},
	{-EIO, "EIO", "input/output error"},
	{-EBADF, "EBADF", "bad file descriptor"},
	{-EAGAIN, "EAGAIN", "resource temporarily unavailable"},
	{-ENOMEM, "ENOMEM", "out of memory"},
	{-EACCES, "EACCES", "permission denied"},
	{-EFAULT, "EFAULT", "bad address"},
	{-EBUSY, "EBUSY", "a checkpoint is already running"},
	{-EEXIST, "EEXIST", "already exists"},
	{-ENOTDIR, "ENOTDIR", "not a directory"},
	{-EISDIR, "EISDIR", "is a directory"},
	{-EINVAL, "EINVAL", "invalid argument"},
	{-ENFILE, "ENFILE", "too many open files in system"},
	{-EMFILE, "EMFILE", "too many open files"},
	{-EFBIG, "EFBIG", "file too large"},
	{-ENOSPC, "ENOSPC", "no space left on device"},
	{-ESPIPE, "ESPIPE", "illegal seek"},
	{-EROFS, "EROFS", "read-only file system"},
	{-EPIPE, "EPIPE", "broken pipe"},
	{-ERANGE, "ERANGE", "result out of range"},
	{-ENAMETOOLONG, "ENAMETOOLONG", "file name too long"},
	{-ENOSYS, "ENOSYS", "function not implemented by the kernel"},
	{-EOVERFLOW, "EOVERFLOW", "value too large"},
	{-EOPNOTSUPP, "EOPNOTSUPP", "operation not supported"},
	{-ECANCELED, "ECANCELED", "operation cancelled"},
	{-EDQUOT, "EDQUOT", "disk quota exceeded"},
	{-ETIMEDOUT, "ETIMEDOUT", "timed out"},
	{-ECHILD, "ECHILD", "no child process"},
	{-ESRCH, "ESRCH", "no such process"},
};

static const struct err_desc *find_err(int err)
{
	for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++)
		if (errs[i].code == err)
			return &errs[i];
	return NULL;
}

CKPT_API const char *ckpt_strerror(int err)
{
	const struct err_desc *d = find_err(err);
	return d ? d->msg : "unknown error";
}

CKPT_API const char *ckpt_err_name(int err)
{
	const struct err_desc *d = find_err(err);
	return d ? d->name : "UNKNOWN";
}

void ckpt__log(const ckpt_heap *h, int level, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	if (!h || !h->opts.log)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	h->opts.log(h->opts.log_arg, level, buf);
}
