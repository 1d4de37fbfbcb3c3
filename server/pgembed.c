/* pgembed: the private PostgreSQL cluster of the embedded default. See pgembed.h. */
#define _GNU_SOURCE
#include "pgembed.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <libpq-fe.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "saga_base.h"

#ifndef SAGAD_PG_BINDIR
#define SAGAD_PG_BINDIR ""
#endif

/* The socket is <pgdir>/.s.PGSQL.5432 and must fit sockaddr_un.sun_path
 * (108 bytes with its NUL), so pgdir may be at most 108 - 1 - 14 bytes. */
#define PG_PORT   5432
#define SOCK_NAME "/.s.PGSQL.5432"
#define PGDIR_MAX (108 - 1 - (int)(sizeof(SOCK_NAME) - 1))
#define OUT_TAIL  2048
#define DBNAME    "saga"
#define DBUSER    "saga"

/* Who runs initdb/pg_ctl: ourselves, or (as root) an unprivileged user,
 * resolved before fork because getpwnam() is not async-signal-safe. */
typedef struct runas {
	int active;
	uid_t uid;
	gid_t gid;
	int ngroups;
	gid_t groups[64];
} runas;

typedef struct pgpaths {
	char bindir[PATH_MAX];
	char initdb[PATH_MAX + 16];
	char pg_ctl[PATH_MAX + 16];
} pgpaths;

static __attribute__((format(printf, 3, 4))) void
seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	if (err != NULL && errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
}

static int
is_exec(const char *dir, const char *name, char *out, size_t outlen)
{
	char p[PATH_MAX];
	if ((size_t)snprintf(p, sizeof(p), "%s/%s", dir, name) >= sizeof(p))
		return 0;
	if (access(p, X_OK) != 0)
		return 0;
	if (out != NULL)
		snprintf(out, outlen, "%s", p);
	return 1;
}

static int
has_pg(const char *dir)
{
	return dir != NULL && dir[0] != '\0' && is_exec(dir, "initdb", NULL, 0) &&
	    is_exec(dir, "pg_ctl", NULL, 0);
}

/* Resets what a child must not inherit from sagad: blocked or ignored
 * signals (sagad blocks SIGTERM to sigwait for it) and open descriptors
 * (a long-lived postmaster must not hold sagad's sockets). Only
 * async-signal-safe calls: this runs between fork and exec. */
static void
child_reset(void)
{
	sigset_t none;
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	for (int s = 1; s < NSIG; s++)
		(void)sigaction(s, &sa, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
#ifdef SYS_close_range
	if (syscall(SYS_close_range, 3u, ~0u, 0u) == 0)
		return;
#endif
	for (int fd = 3; fd < 4096; fd++)
		close(fd);
}

static int
drop_to(const runas *ra)
{
	if (ra == NULL || !ra->active)
		return 0;
	if (setgroups((size_t)ra->ngroups, ra->groups) != 0 || setgid(ra->gid) != 0 ||
	    setuid(ra->uid) != 0)
		return -1;
	return 0;
}

/*
 * Runs argv (argv[0] an absolute path, or a bare name looked up in PATH
 * when `path_search`) without a shell, as `ra`, with stdin from /dev/null
 * and stdout+stderr captured: the last outlen-1 bytes land in out.
 * Returns the exit code, 128+signal, or -1 if it could not run (errno).
 */
static int
run_cmd(const char *const argv[], const runas *ra, int path_search, char *out, size_t outlen)
{
	int pfd[2], status;
	size_t olen = 0;
	pid_t pid;

	if (out != NULL && outlen > 0)
		out[0] = '\0';
	if (pipe2(pfd, O_CLOEXEC) != 0)
		return -1;
	pid = fork();
	if (pid < 0) {
		int e = errno;
		close(pfd[0]);
		close(pfd[1]);
		errno = e;
		return -1;
	}
	if (pid == 0) {
		int nul = open("/dev/null", O_RDONLY);
		if (nul >= 0) {
			dup2(nul, 0);
			if (nul != 0)
				close(nul);
		}
		dup2(pfd[1], 1);
		dup2(pfd[1], 2);
		child_reset();
		/* pg_ctl and initdb resolve relative paths against the cwd,
		 * which the unprivileged user may not be able to enter. */
		if (chdir("/") != 0)
			_exit(126);
		if (drop_to(ra) != 0) {
			static const char m[] = "cannot switch to the PostgreSQL user\n";
			(void)!write(2, m, sizeof(m) - 1);
			_exit(126);
		}
		if (path_search)
			execvp(argv[0], (char *const *)argv);
		else
			execv(argv[0], (char *const *)argv);
		{
			static const char m[] = "exec failed: ";
			const char *e = strerrordesc_np(errno); /* static, no locale */
			(void)!write(2, m, sizeof(m) - 1);
			(void)!write(2, e, strlen(e));
			(void)!write(2, "\n", 1);
		}
		_exit(127);
	}
	close(pfd[1]);
	for (;;) {
		char buf[1024];
		ssize_t n = read(pfd[0], buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (out == NULL || outlen < 2)
			continue;
		/* Keep the tail: the last lines say why a command failed. */
		size_t cap = outlen - 1, nn = (size_t)n;
		const char *src = buf;
		if (nn >= cap) {
			src += nn - cap;
			nn = cap;
			olen = 0;
		} else if (olen + nn > cap) {
			size_t drop = olen + nn - cap;
			memmove(out, out + drop, olen - drop);
			olen -= drop;
		}
		memcpy(out + olen, src, nn);
		olen += nn;
		out[olen] = '\0';
	}
	close(pfd[0]);
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			return -1;
	}
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return -1;
}

/* Trims trailing newlines and spaces (command output, libpq messages). */
static void
rtrim(char *s)
{
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '))
		s[--n] = '\0';
}

static void
tail_file(const char *path, char *out, size_t outlen)
{
	int fd;
	off_t size;
	ssize_t n;

	out[0] = '\0';
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return;
	size = lseek(fd, 0, SEEK_END);
	if (size > (off_t)(outlen - 1))
		lseek(fd, size - (off_t)(outlen - 1), SEEK_SET);
	else
		lseek(fd, 0, SEEK_SET);
	n = read(fd, out, outlen - 1);
	out[n > 0 ? n : 0] = '\0';
	close(fd);
	rtrim(out);
}

/* ---- finding initdb and pg_ctl --------------------------------------- */

static int
version_dir_cmp(const char *a, const char *b)
{
	/* Numeric compare of "15", "9.6", "16": major then minor. */
	char *ea, *eb;
	long ma = strtol(a, &ea, 10), mb = strtol(b, &eb, 10);
	if (ma != mb)
		return ma < mb ? -1 : 1;
	long na = *ea == '.' ? strtol(ea + 1, NULL, 10) : 0;
	long nb = *eb == '.' ? strtol(eb + 1, NULL, 10) : 0;
	return na < nb ? -1 : na > nb;
}

static int
find_in_debian_dirs(char *out, size_t outlen)
{
	DIR *d = opendir("/usr/lib/postgresql");
	struct dirent *e;
	char best[NAME_MAX + 1] = "";
	int found = 0;

	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL) {
		char bin[PATH_MAX];
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		snprintf(bin, sizeof(bin), "/usr/lib/postgresql/%s/bin", e->d_name);
		if (!has_pg(bin))
			continue;
		if (!found || version_dir_cmp(e->d_name, best) > 0) {
			snprintf(best, sizeof(best), "%s", e->d_name);
			found = 1;
		}
	}
	closedir(d);
	if (found)
		snprintf(out, outlen, "/usr/lib/postgresql/%s/bin", best);
	return found;
}

static int
find_in_path(char *out, size_t outlen)
{
	const char *path = getenv("PATH");
	char *copy, *save = NULL;
	int found = 0;

	if (path == NULL || (copy = strdup(path)) == NULL)
		return 0;
	for (char *dir = strtok_r(copy, ":", &save); dir != NULL;
	     dir = strtok_r(NULL, ":", &save)) {
		if (dir[0] == '/' && has_pg(dir)) {
			snprintf(out, outlen, "%s", dir);
			found = 1;
			break;
		}
	}
	free(copy);
	return found;
}

static int
find_bindir(const char *bindir, pgpaths *pp, char *err, size_t errlen)
{
	const char *env = getenv("SAGAD_PG_BINDIR");
	char out[PATH_MAX + 64];
	const char *why;

	/* A directory the operator named is used or refused, never silently
	 * replaced by another PostgreSQL version found elsewhere. */
	if (bindir != NULL && bindir[0] != '\0') {
		why = "--pg-bindir";
		goto named;
	}
	if (env != NULL && env[0] != '\0') {
		bindir = env;
		why = "SAGAD_PG_BINDIR";
		goto named;
	}
	if (has_pg(SAGAD_PG_BINDIR)) {
		snprintf(pp->bindir, sizeof(pp->bindir), "%s", SAGAD_PG_BINDIR);
		goto found;
	}
	{
		const char *argv[] = { "pg_config", "--bindir", NULL };
		if (run_cmd(argv, NULL, 1, out, sizeof(out)) == 0) {
			rtrim(out);
			if (strlen(out) < sizeof(pp->bindir) && has_pg(out)) {
				memcpy(pp->bindir, out, strlen(out) + 1);
				goto found;
			}
		}
	}
	if (find_in_debian_dirs(pp->bindir, sizeof(pp->bindir)))
		goto found;
	if (find_in_path(pp->bindir, sizeof(pp->bindir)))
		goto found;
	seterr(err, errlen,
	    "cannot find PostgreSQL's initdb and pg_ctl (looked in pg_config "
	    "--bindir, /usr/lib/postgresql/*/bin and PATH): install the PostgreSQL server "
	    "(Debian: apt-get install postgresql), set --pg-bindir, or give --db to use an "
	    "existing database");
	return SAGA_ENOTFOUND;

named:
	if (!has_pg(bindir)) {
		seterr(err, errlen,
		    "%s %s: no initdb and pg_ctl there (it must be the directory "
		    "holding PostgreSQL's server programs, e.g. /usr/lib/postgresql/15/bin)",
		    why, bindir);
		return SAGA_EINVAL;
	}
	snprintf(pp->bindir, sizeof(pp->bindir), "%s", bindir);
found:
	snprintf(pp->initdb, sizeof(pp->initdb), "%s/initdb", pp->bindir);
	snprintf(pp->pg_ctl, sizeof(pp->pg_ctl), "%s/pg_ctl", pp->bindir);
	return 0;
}

/* ---- directories --------------------------------------------------------- */

static int
mkdir_p(const char *path, mode_t mode)
{
	char tmp[PATH_MAX];
	size_t n = strlen(path);

	if (n >= sizeof(tmp)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(tmp, path, n + 1);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(tmp, mode) != 0 && errno != EEXIST)
		return -1;
	return 0;
}

static int
rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)f;
	return flag == FTW_DP ? rmdir(p) : unlink(p);
}

static int
rm_rf(const char *path)
{
	if (access(path, F_OK) != 0)
		return 0;
	return nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static uid_t chown_uid;
static gid_t chown_gid;

static int
chown_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)flag;
	(void)f;
	if (st->st_uid == chown_uid && st->st_gid == chown_gid)
		return 0;
	return lchown(p, chown_uid, chown_gid);
}

/* chown -R. Only called with the same user from one thread at a time
 * (sagad starts its cluster once), hence the file-level uid/gid. */
static int
chown_r(const char *path, uid_t uid, gid_t gid)
{
	chown_uid = uid;
	chown_gid = gid;
	return nftw(path, chown_cb, 16, FTW_PHYS);
}

static int
dir_is_empty(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int empty = 1;

	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
			empty = 0;
			break;
		}
	}
	closedir(d);
	return empty;
}

static void
fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		(void)fsync(fd);
		close(fd);
	}
}

/* As root: can the PostgreSQL user reach and write pgdir? A parent such as
 * /root (mode 0700) would make initdb fail with a less helpful message. */
static int
user_can_access(const runas *ra, const char *path)
{
	int status;
	pid_t pid = fork();

	if (pid < 0)
		return -1;
	if (pid == 0) {
		if (drop_to(ra) != 0)
			_exit(126);
		_exit(access(path, R_OK | W_OK | X_OK) == 0 ? 0 : 1);
	}
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			return -1;
	}
	return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* ---- the cluster ---------------------------------------------------------- */

typedef struct pgenv {
	pgpaths paths;
	runas ra;
	char data_dir[PATH_MAX];
	char pgdir[PATH_MAX + 8];
	char user[64];
} pgenv;

static int
resolve(pgenv *pe, const char *data_dir, const char *bindir, const char *pg_user, int create,
    char *err, size_t errlen)
{
	int rv;

	memset(pe, 0, sizeof(*pe));
	if (data_dir == NULL || data_dir[0] == '\0') {
		seterr(err, errlen, "the data directory must not be empty (--data-dir)");
		return SAGA_EINVAL;
	}
	if (data_dir[0] == '/') {
		snprintf(pe->data_dir, sizeof(pe->data_dir), "%s", data_dir);
	} else {
		char cwd[PATH_MAX];
		if (getcwd(cwd, sizeof(cwd)) == NULL) {
			seterr(err, errlen, "cannot resolve data directory %s: getcwd: %s",
			    data_dir, strerror(errno));
			return SAGA_EINVAL;
		}
		/* "./sagad-data" -> "/cwd/sagad-data": the socket path is
		 * shorter and the conninfo clearer without "/./". */
		while (data_dir[0] == '.' && data_dir[1] == '/')
			data_dir += 2;
		if (strcmp(data_dir, ".") == 0 || data_dir[0] == '\0')
			snprintf(pe->data_dir, sizeof(pe->data_dir), "%s", cwd);
		else if ((size_t)snprintf(pe->data_dir, sizeof(pe->data_dir), "%s/%s",
			     strcmp(cwd, "/") == 0 ? "" : cwd, data_dir) >= sizeof(pe->data_dir)) {
			seterr(err, errlen, "data directory path too long");
			return SAGA_EINVAL;
		}
	}
	{
		size_t n = strlen(pe->data_dir);
		while (n > 1 && pe->data_dir[n - 1] == '/')
			pe->data_dir[--n] = '\0';
	}
	snprintf(pe->pgdir, sizeof(pe->pgdir), "%s/pg", pe->data_dir);
	if ((int)strlen(pe->pgdir) > PGDIR_MAX) {
		seterr(err, errlen,
		    "data directory path too long for PostgreSQL's unix socket: "
		    "%s is %zu characters, at most %d allowed; choose a shorter --data-dir",
		    pe->pgdir, strlen(pe->pgdir), PGDIR_MAX);
		return SAGA_EINVAL;
	}
	/* pg_ctl runs postgres through /bin/sh -c with the data directory in
	 * double quotes; these characters would be interpreted there. */
	if (strpbrk(pe->pgdir, "\"\\$`\n") != NULL) {
		seterr(err, errlen,
		    "data directory %s contains a character pg_ctl cannot handle "
		    "(one of \" \\ $ ` or a newline); choose another --data-dir",
		    pe->data_dir);
		return SAGA_EINVAL;
	}

	if ((rv = find_bindir(bindir, &pe->paths, err, errlen)) != 0)
		return rv;

	if (geteuid() == 0) {
		struct passwd *pw;
		if (pg_user == NULL || pg_user[0] == '\0')
			pg_user = "postgres";
		snprintf(pe->user, sizeof(pe->user), "%s", pg_user);
		if ((pw = getpwnam(pg_user)) == NULL) {
			seterr(err, errlen,
			    "running as root: the embedded PostgreSQL needs an "
			    "unprivileged OS user; create user '%s' or set --pg-user",
			    pg_user);
			return SAGA_EINVAL;
		}
		if (pw->pw_uid == 0) {
			seterr(err, errlen,
			    "running as root: --pg-user %s is root too; PostgreSQL "
			    "refuses to run as root, name an unprivileged user",
			    pg_user);
			return SAGA_EINVAL;
		}
		pe->ra.active = 1;
		pe->ra.uid = pw->pw_uid;
		pe->ra.gid = pw->pw_gid;
		pe->ra.ngroups = (int)(sizeof(pe->ra.groups) / sizeof(pe->ra.groups[0]));
		if (getgrouplist(pg_user, pw->pw_gid, pe->ra.groups, &pe->ra.ngroups) < 0) {
			pe->ra.groups[0] = pw->pw_gid;
			pe->ra.ngroups = 1;
		}
	}

	if (create) {
		/* As root the data directory must be searchable by the
		 * PostgreSQL user (0711: it can enter, not list). */
		if (mkdir_p(pe->data_dir, pe->ra.active ? 0711 : 0700) != 0) {
			seterr(err, errlen, "cannot create data directory %s: %s", pe->data_dir,
			    strerror(errno));
			return SAGA_EINVAL;
		}
	}
	return 0;
}

/*
 * A postmaster killed with SIGKILL whose parent never reaps it (PID 1 of
 * some containers does not) stays a zombie: kill(pid, 0) still succeeds,
 * so pg_ctl calls it running and postgres refuses to start over its lock
 * file. A zombie is certainly dead: remove the stale postmaster.pid.
 */
static void
clear_zombie_pidfile(const pgenv *pe)
{
	char path[PATH_MAX + 32], buf[512];
	int fd;
	ssize_t n;
	long pid;

	snprintf(path, sizeof(path), "%s/postmaster.pid", pe->pgdir);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0 || (buf[n] = '\0', pid = strtol(buf, NULL, 10)) <= 0)
		return;
	snprintf(buf, sizeof(buf), "/proc/%ld/stat", pid);
	if ((fd = open(buf, O_RDONLY | O_CLOEXEC)) < 0)
		return;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	/* "pid (comm) S ...": comm may hold spaces and parentheses. */
	const char *rp = strrchr(buf, ')');
	if (rp != NULL && rp[1] == ' ' && rp[2] == 'Z') {
		slog_warn("the embedded PostgreSQL's postmaster (pid %ld) died without being "
			  "reaped; removing its stale %s",
		    pid, path);
		(void)unlink(path);
	}
}

/* pg_ctl status: 0 running, 3 not running, 4 no usable data directory. */
static int
pg_status(const pgenv *pe, char *out, size_t outlen)
{
	const char *argv[] = { pe->paths.pg_ctl, "status", "-D", pe->pgdir, NULL };
	return run_cmd(argv, &pe->ra, 0, out, outlen);
}

static int
init_cluster(const pgenv *pe, char *err, size_t errlen)
{
	char initdir[PATH_MAX], out[OUT_TAIL];
	int rc, rv = 0;
	struct stat st;

	/* initdb runs into a side directory renamed into place when done, so
	 * that <data_dir>/pg exists only as a complete cluster: a crash
	 * during initdb leaves pg.init, which the next start removes. */
	if ((size_t)snprintf(initdir, sizeof(initdir), "%s/pg.init", pe->data_dir) >=
	    sizeof(initdir)) {
		seterr(err, errlen, "data directory path too long");
		return SAGA_EINVAL;
	}
	if (stat(pe->pgdir, &st) == 0) {
		if (!S_ISDIR(st.st_mode) || !dir_is_empty(pe->pgdir)) {
			seterr(err, errlen,
			    "%s exists but is not a PostgreSQL data directory (no "
			    "PG_VERSION); move it away or choose another --data-dir",
			    pe->pgdir);
			return SAGA_EINVAL;
		}
		if (rmdir(pe->pgdir) != 0) {
			seterr(
			    err, errlen, "cannot remove empty %s: %s", pe->pgdir, strerror(errno));
			return SAGA_EINVAL;
		}
	}
	if (rm_rf(initdir) != 0 || mkdir(initdir, 0700) != 0) {
		seterr(err, errlen, "cannot create %s: %s", initdir, strerror(errno));
		return SAGA_EINVAL;
	}
	if (pe->ra.active) {
		if (chown(initdir, pe->ra.uid, pe->ra.gid) != 0) {
			seterr(err, errlen, "cannot chown %s to %s: %s", initdir, pe->user,
			    strerror(errno));
			rv = SAGA_EINVAL;
			goto fail;
		}
		if (user_can_access(&pe->ra, initdir) != 1) {
			seterr(err, errlen,
			    "running as root: PostgreSQL runs as user '%s', which "
			    "cannot reach %s; make every parent directory searchable by it (chmod "
			    "o+x) or choose another --data-dir",
			    pe->user, pe->data_dir);
			rv = SAGA_EINVAL;
			goto fail;
		}
	}
	slog_info("initializing the embedded PostgreSQL cluster in %s", pe->pgdir);
	{
		/* No --nosync: this is the product's real cluster. */
		const char *argv[] = { pe->paths.initdb, "-D", initdir, "-U", DBUSER, "-A", "trust",
			"-E", "UTF8", "--locale=C", NULL };
		rc = run_cmd(argv, &pe->ra, 0, out, sizeof(out));
	}
	if (rc != 0) {
		rtrim(out);
		seterr(err, errlen, "initdb %s failed (exit %d): %s", initdir, rc,
		    rc < 0 ? strerror(errno) : out);
		rv = SAGA_EDB;
		goto fail;
	}
	if (rename(initdir, pe->pgdir) != 0) {
		seterr(
		    err, errlen, "cannot rename %s to %s: %s", initdir, pe->pgdir, strerror(errno));
		rv = SAGA_EINVAL;
		goto fail;
	}
	fsync_dir(pe->data_dir);
	return 0;

fail:
	(void)rm_rf(initdir);
	return rv;
}

static void
build_conninfo(char *out, size_t outlen, const char *pgdir, const char *db)
{
	char host[PATH_MAX * 2];
	size_t o = 0;

	/* conninfo values with spaces are single-quoted, ' and \ escaped. */
	for (const char *p = pgdir; *p && o + 3 < sizeof(host); p++) {
		if (*p == '\'' || *p == '\\')
			host[o++] = '\\';
		host[o++] = *p;
	}
	host[o] = '\0';
	snprintf(out, outlen, "host='%s' port=%d dbname=%s user=%s", host, PG_PORT, db, DBUSER);
}

/* Waits until the server accepts connections. A server that answers
 * "starting up" (crash recovery can be long) gets up to timeout_s; one
 * that does not answer at all (no socket: e.g. pg_ctl was fooled by a
 * stale postmaster.pid whose PID was reused) only 15 s. */
static int
wait_ready(const char *conninfo, int timeout_s)
{
	struct timespec ts = { 0, 100 * 1000 * 1000 };
	int silent = 0;
	for (int i = 0; i < timeout_s * 10; i++) {
		PGPing p = PQping(conninfo);
		if (p == PQPING_OK)
			return 0;
		if (p == PQPING_NO_ATTEMPT)
			return -1;
		if (p == PQPING_NO_RESPONSE && ++silent > 150)
			return -1;
		nanosleep(&ts, NULL);
	}
	return -1;
}

/* The cluster's own settings, in its configuration rather than on pg_ctl's
 * command line, so that `pg_ctl start -D DIR` by hand starts it the same
 * way: no TCP, its unix socket in its own directory (0700: private to the
 * cluster's user; root connects regardless of modes). Rewritten at every
 * start; postgresql.conf includes it (the line is added once). */
#define EMBED_CONF "sagad-embedded.conf"

static int
write_cluster_conf(const pgenv *pe, char *err, size_t errlen)
{
	char path[PATH_MAX + 64], tmp[PATH_MAX + 80], dir[PATH_MAX * 2 + 8];
	size_t o = 0;
	/* A string setting in single quotes (doubled inside); the directory in
	 * double quotes, as unix_socket_directories is a list. */
	for (const char *s = pe->pgdir; *s && o + 3 < sizeof(dir); s++) {
		if (*s == '\'')
			dir[o++] = '\'';
		dir[o++] = *s;
	}
	dir[o] = '\0';
	snprintf(path, sizeof(path), "%s/" EMBED_CONF, pe->pgdir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (f == NULL) {
		seterr(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
		return SAGA_EINVAL;
	}
	fprintf(f,
	    "# Written by sagad at every start of its embedded cluster (edits are lost).\n"
	    "# The cluster serves only a unix socket in its own directory, also when\n"
	    "# started by hand (pg_ctl start -D %s).\n"
	    "listen_addresses = ''\n"
	    "unix_socket_directories = '\"%s\"'\n"
	    "unix_socket_permissions = 0700\n"
	    "port = %d\n",
	    pe->pgdir, dir, PG_PORT);
	int bad = ferror(f);
	if (fclose(f) != 0 || bad || chmod(tmp, 0644) != 0 || rename(tmp, path) != 0) {
		seterr(err, errlen, "cannot write %s: %s", path, strerror(errno));
		unlink(tmp);
		return SAGA_EINVAL;
	}
	snprintf(path, sizeof(path), "%s/postgresql.conf", pe->pgdir);
	static const char line[] = "include_if_exists = '" EMBED_CONF "'";
	size_t len = 0;
	char *conf = NULL;
	if ((f = fopen(path, "r")) != NULL) {
		fseek(f, 0, SEEK_END);
		long n = ftell(f);
		rewind(f);
		if (n >= 0 && (conf = malloc((size_t)n + 1)) != NULL) {
			len = fread(conf, 1, (size_t)n, f);
			conf[len] = '\0';
		}
		fclose(f);
	}
	int has = conf != NULL && strstr(conf, line) != NULL;
	free(conf);
	if (!has) {
		if ((f = fopen(path, "a")) == NULL) {
			seterr(err, errlen, "cannot add the include of %s to %s: %s", EMBED_CONF,
			    path, strerror(errno));
			return SAGA_EINVAL;
		}
		fprintf(f,
		    "\n# sagad's settings for this cluster (socket only; see the file)\n%s\n",
		    line);
		if (fclose(f) != 0) {
			seterr(
			    err, errlen, "cannot add the include to %s: %s", path, strerror(errno));
			return SAGA_EINVAL;
		}
	}
	return 0;
}

static int
start_cluster(const pgenv *pe, char *err, size_t errlen)
{
	char out[OUT_TAIL], logtail[OUT_TAIL], logpath[PATH_MAX + 32];
	int rc;

	snprintf(logpath, sizeof(logpath), "%s/postgres.log", pe->pgdir);
	if ((rc = write_cluster_conf(pe, err, errlen)) != 0)
		return rc;
	slog_info("starting the embedded PostgreSQL in %s", pe->pgdir);
	{
		const char *argv[] = { pe->paths.pg_ctl, "-D", pe->pgdir, "-l", logpath, "-w", "-t",
			"60", "start", NULL };
		rc = run_cmd(argv, &pe->ra, 0, out, sizeof(out));
	}
	if (rc == 0)
		return 0;
	/* A long crash recovery can outlast pg_ctl's wait; the server is
	 * then running, only not ready yet. */
	if (pg_status(pe, NULL, 0) == 0) {
		char ci[PATH_MAX * 2 + 128];
		build_conninfo(ci, sizeof(ci), pe->pgdir, "postgres");
		slog_warn("the embedded PostgreSQL is slow to start (recovery?); waiting");
		if (wait_ready(ci, 600) == 0)
			return 0;
	}
	rtrim(out);
	tail_file(logpath, logtail, sizeof(logtail));
	seterr(err, errlen, "cannot start the embedded PostgreSQL in %s (pg_ctl exit %d): %s%s%s",
	    pe->pgdir, rc, rc < 0 ? strerror(errno) : out, logtail[0] ? "; postgres.log: " : "",
	    logtail);
	return SAGA_EDB;
}

static int
ensure_database(const char *pgdir, char *err, size_t errlen)
{
	char ci[PATH_MAX * 2 + 128];
	PGconn *conn = NULL;
	PGresult *res = NULL;
	int rv = 0;
	const char *params[1] = { DBNAME };

	build_conninfo(ci, sizeof(ci), pgdir, "postgres");
	conn = PQconnectdb(ci);
	if (PQstatus(conn) != CONNECTION_OK) {
		seterr(err, errlen, "cannot connect to the embedded PostgreSQL (%s): %s", ci,
		    PQerrorMessage(conn));
		rv = SAGA_EDB;
		goto fail;
	}
	res = PQexecParams(
	    conn, "SELECT 1 FROM pg_database WHERE datname = $1", 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		seterr(err, errlen, "embedded PostgreSQL: %s", PQresultErrorMessage(res));
		rv = SAGA_EDB;
		goto fail;
	}
	if (PQntuples(res) == 0) {
		PQclear(res);
		slog_info("creating database %s in the embedded PostgreSQL", DBNAME);
		/* DDL takes no parameters; the name is a constant. */
		res = PQexec(conn, "CREATE DATABASE " DBNAME);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
			/* 42P04 duplicate_database: another sagad was faster. */
			if (state == NULL || strcmp(state, "42P04") != 0) {
				seterr(err, errlen, "cannot create database %s: %s", DBNAME,
				    PQresultErrorMessage(res));
				rv = SAGA_EDB;
				goto fail;
			}
		}
	}
fail:
	if (err != NULL && rv != 0)
		rtrim(err);
	PQclear(res);
	PQfinish(conn);
	return rv;
}

int
pgembed_start(const char *data_dir, const char *bindir, const char *pg_user, char *conninfo,
    size_t conninfo_len, char *err, size_t errlen)
{
	pgenv *pe;
	char verfile[PATH_MAX + 40], out[OUT_TAIL], ci[PATH_MAX * 2 + 128];
	struct stat st;
	int rv, rc;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	/* ~20 KiB of paths: keep it off small thread stacks. */
	if ((pe = malloc(sizeof(*pe))) == NULL) {
		seterr(err, errlen, "out of memory");
		return SAGA_ENOMEM;
	}
	if ((rv = resolve(pe, data_dir, bindir, pg_user, 1, err, errlen)) != 0)
		goto fail;
	/* Checked before anything is started, so a caller's mistake does not
	 * leave a cluster running. */
	build_conninfo(ci, sizeof(ci), pe->pgdir, DBNAME);
	if (conninfo == NULL || strlen(ci) >= conninfo_len) {
		seterr(err, errlen, "conninfo buffer too small (%zu bytes, need %zu)", conninfo_len,
		    strlen(ci) + 1);
		rv = SAGA_EINVAL;
		goto fail;
	}

	snprintf(verfile, sizeof(verfile), "%s/PG_VERSION", pe->pgdir);
	if (access(verfile, F_OK) != 0 && (rv = init_cluster(pe, err, errlen)) != 0)
		goto fail;

	if (pe->ra.active) {
		/* A directory restored or copied by root would be refused by
		 * postgres: give it (back) to the cluster's user. */
		if (stat(pe->pgdir, &st) == 0 && st.st_uid != pe->ra.uid &&
		    chown_r(pe->pgdir, pe->ra.uid, pe->ra.gid) != 0) {
			seterr(err, errlen, "cannot chown -R %s to %s: %s", pe->pgdir, pe->user,
			    strerror(errno));
			rv = SAGA_EINVAL;
			goto fail;
		}
		if (user_can_access(&pe->ra, pe->pgdir) != 1) {
			seterr(err, errlen,
			    "running as root: PostgreSQL runs as user '%s', which "
			    "cannot reach %s; make every parent directory searchable by it (chmod "
			    "o+x) or choose another --data-dir",
			    pe->user, pe->pgdir);
			rv = SAGA_EINVAL;
			goto fail;
		}
	}

	clear_zombie_pidfile(pe);
	rc = pg_status(pe, out, sizeof(out));
	if (rc == 0) {
		slog_info("re-using the running embedded PostgreSQL in %s", pe->pgdir);
		build_conninfo(ci, sizeof(ci), pe->pgdir, "postgres");
		if (wait_ready(ci, 600) != 0) {
			seterr(err, errlen,
			    "the embedded PostgreSQL in %s is running but does not "
			    "accept connections; see %s/postgres.log",
			    pe->pgdir, pe->pgdir);
			rv = SAGA_EDB;
			goto fail;
		}
	} else if (rc == 3) {
		if ((rv = start_cluster(pe, err, errlen)) != 0)
			goto fail;
	} else {
		rtrim(out);
		seterr(err, errlen, "pg_ctl status -D %s failed (exit %d): %s", pe->pgdir, rc,
		    rc < 0 ? strerror(errno) : out);
		rv = SAGA_EDB;
		goto fail;
	}

	if ((rv = ensure_database(pe->pgdir, err, errlen)) != 0)
		goto fail;

	build_conninfo(ci, sizeof(ci), pe->pgdir, DBNAME);
	memcpy(conninfo, ci, strlen(ci) + 1);
	rv = 0;
fail:
	free(pe);
	return rv;
}

int
pgembed_stop(const char *data_dir, const char *bindir, const char *pg_user)
{
	pgenv *pe;
	char verfile[PATH_MAX + 40], out[OUT_TAIL];
	int rv = 0, rc;

	if ((pe = malloc(sizeof(*pe))) == NULL)
		return SAGA_ENOMEM;
	if ((rv = resolve(pe, data_dir, bindir, pg_user, 0, NULL, 0)) != 0)
		goto fail;
	snprintf(verfile, sizeof(verfile), "%s/PG_VERSION", pe->pgdir);
	if (access(verfile, F_OK) != 0)
		goto fail; /* no cluster, nothing to stop */
	if (pg_status(pe, NULL, 0) != 0)
		goto fail;
	slog_info("stopping the embedded PostgreSQL in %s", pe->pgdir);
	{
		const char *argv[] = { pe->paths.pg_ctl, "-D", pe->pgdir, "-m", "fast", "-w", "-t",
			"60", "stop", NULL };
		rc = run_cmd(argv, &pe->ra, 0, out, sizeof(out));
	}
	if (rc != 0) {
		rtrim(out);
		slog_error("pg_ctl stop -D %s failed (exit %d): %s", pe->pgdir, rc, out);
		rv = SAGA_EDB;
	}
fail:
	free(pe);
	return rv;
}
