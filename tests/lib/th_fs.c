/* th_fs: temp directories, files and polling for tests. See th.h. */
#define _GNU_SOURCE
#include "th.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

long long
th_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

char *
th_tmpdir(void)
{
	const char *base = getenv("TMPDIR");
	char *p;

	if (base == NULL || base[0] == '\0')
		base = "/tmp";
	if (asprintf(&p, "%s/th-XXXXXX", base) < 0)
		return NULL;
	if (mkdtemp(p) == NULL) {
		fprintf(stderr, "th_tmpdir: mkdtemp %s: %s\n", p, strerror(errno));
		free(p);
		return NULL;
	}
	/* Searchable (not listable) by others: as root, PostgreSQL runs as
	 * `postgres` and must reach data directories made inside. */
	if (chmod(p, 0711) != 0) {
		fprintf(stderr, "th_tmpdir: chmod %s: %s\n", p, strerror(errno));
		rmdir(p);
		free(p);
		return NULL;
	}
	return p;
}

static int
rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)f;
	if ((flag == FTW_DP ? rmdir(p) : unlink(p)) != 0 && errno != ENOENT) {
		fprintf(stderr, "th_rm_rf: %s: %s\n", p, strerror(errno));
		return -1;
	}
	return 0;
}

int
th_rm_rf(const char *path)
{
	struct stat st;
	if (path == NULL || lstat(path, &st) != 0)
		return 0;
	return nftw(path, rm_cb, 32, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : -1;
}

char *
th_read_file(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	char *buf = NULL;
	size_t cap = 0, n = 0;

	if (fd < 0)
		return NULL;
	for (;;) {
		if (cap - n < 4096) {
			char *nb = realloc(buf, cap * 2 + 8192);
			if (nb == NULL)
				goto fail;
			buf = nb;
			cap = cap * 2 + 8192;
		}
		ssize_t r = read(fd, buf + n, cap - n - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			goto fail;
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	buf[n] = '\0';
	if (len != NULL)
		*len = n;
	return buf;
fail:
	close(fd);
	free(buf);
	return NULL;
}

int
th_write_file(const char *path, const char *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		fprintf(stderr, "th_write_file: %s: %s\n", path, strerror(errno));
		return -1;
	}
	while (len > 0) {
		ssize_t w = write(fd, data, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			fprintf(stderr, "th_write_file: %s: %s\n", path, strerror(errno));
			close(fd);
			return -1;
		}
		data += w;
		len -= (size_t)w;
	}
	return close(fd) == 0 ? 0 : -1;
}

int
th_wait_until(int (*fn)(void *arg), void *arg, int timeout_ms)
{
	long long deadline = th_now_ms() + timeout_ms;
	long step_ms = 10;

	for (;;) {
		if (fn(arg))
			return 0;
		if (th_now_ms() >= deadline)
			return -1;
		struct timespec ts = { 0, step_ms * 1000 * 1000 };
		nanosleep(&ts, NULL);
		if (step_ms < 100)
			step_ms += 10;
	}
}
