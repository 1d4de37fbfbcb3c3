/* th_proc: child processes of a test. See th.h. */
#define _GNU_SOURCE
#include "th.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* Finds name in PATH (in the parent: execvp after fork in a threaded test
 * would allocate). */
static int
resolve_path(const char *name, char *out, size_t outlen)
{
	const char *path = getenv("PATH");
	if (strchr(name, '/') != NULL) {
		snprintf(out, outlen, "%s", name);
		return 0;
	}
	if (path == NULL)
		path = "/usr/local/bin:/usr/bin:/bin";
	while (*path) {
		const char *end = strchr(path, ':');
		size_t n = end != NULL ? (size_t)(end - path) : strlen(path);
		if (n > 0 &&
		    (size_t)snprintf(out, outlen, "%.*s/%s", (int)n, path, name) < outlen &&
		    access(out, X_OK) == 0)
			return 0;
		path += n;
		if (*path == ':')
			path++;
	}
	return -1;
}

static size_t
keylen(const char *kv)
{
	const char *eq = strchr(kv, '=');
	return eq != NULL ? (size_t)(eq - kv) : strlen(kv);
}

/* environ minus the keys env sets, plus env. Pointers borrowed. */
static char **
build_env(const char *const env[])
{
	size_t ne = 0, nx = 0, k = 0;
	char **out;

	while (environ[ne] != NULL)
		ne++;
	while (env != NULL && env[nx] != NULL)
		nx++;
	if ((out = calloc(ne + nx + 1, sizeof(*out))) == NULL)
		return NULL;
	for (size_t i = 0; i < ne; i++) {
		size_t kl = keylen(environ[i]);
		int replaced = 0;
		for (size_t j = 0; j < nx && !replaced; j++)
			replaced = keylen(env[j]) == kl && strncmp(env[j], environ[i], kl) == 0;
		if (!replaced)
			out[k++] = environ[i];
	}
	for (size_t j = 0; j < nx; j++)
		out[k++] = (char *)env[j];
	out[k] = NULL;
	return out;
}

/* Closes every descriptor >= 3 but keep (async-signal-safe). */
static void
close_others(int keep)
{
	if ((keep <= 3 || syscall(SYS_close_range, 3u, (unsigned)keep - 1, 0u) == 0) &&
	    syscall(SYS_close_range, (unsigned)keep + 1, ~0u, 0u) == 0)
		return;
	for (int fd = 3; fd < 4096; fd++) /* kernel without close_range */
		if (fd != keep)
			close(fd);
}

pid_t
th_spawn_as(
    const char *const argv[], const char *const env[], const char *log_path, const char *user)
{
	char path[4096];
	char **envp = NULL;
	int logfd = -1, ep[2] = { -1, -1 }, child_errno = 0;
	gid_t groups[64];
	int ngroups = 0, drop = 0;
	uid_t uid = 0;
	gid_t gid = 0;
	pid_t parent = getpid(), pid = -1;
	ssize_t n;

	if (argv == NULL || argv[0] == NULL)
		return -1;
	if (resolve_path(argv[0], path, sizeof(path)) != 0) {
		fprintf(stderr, "th_spawn: %s: not found in PATH\n", argv[0]);
		return -1;
	}
	if (user != NULL && geteuid() == 0) {
		struct passwd *pw = getpwnam(user);
		if (pw == NULL) {
			fprintf(stderr, "th_spawn: no such user %s\n", user);
			return -1;
		}
		uid = pw->pw_uid;
		gid = pw->pw_gid;
		ngroups = (int)(sizeof(groups) / sizeof(groups[0]));
		if (getgrouplist(user, gid, groups, &ngroups) < 0) {
			groups[0] = gid;
			ngroups = 1;
		}
		drop = 1;
	}
	if ((envp = build_env(env)) == NULL)
		goto fail;
	if (log_path != NULL &&
	    (logfd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) < 0) {
		fprintf(stderr, "th_spawn: %s: %s\n", log_path, strerror(errno));
		goto fail;
	}
	if (pipe2(ep, O_CLOEXEC) != 0)
		goto fail;

	pid = fork();
	if (pid < 0) {
		fprintf(stderr, "th_spawn: fork: %s\n", strerror(errno));
		goto fail;
	}
	if (pid == 0) {
		struct sigaction sa;
		sigset_t none;
		int e;

		if (drop &&
		    (setgroups((size_t)ngroups, groups) != 0 || setgid(gid) != 0 ||
			setuid(uid) != 0))
			goto child_fail;
		/* After the uid change: changing credentials clears it. */
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
			_exit(127);
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = SIG_DFL;
		for (int s = 1; s < NSIG; s++)
			(void)sigaction(s, &sa, NULL);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		if ((e = open("/dev/null", O_RDONLY)) >= 0 && e != 0) {
			dup2(e, 0);
			close(e);
		}
		if (logfd >= 0) {
			dup2(logfd, 1);
			dup2(logfd, 2);
		}
		/* Everything else the test has open (check's pipes, other
		 * children's pipes) stays out of the child; ep[1] closes on
		 * exec by itself. */
		close_others(ep[1]);
		execve(path, (char *const *)argv, envp);
	child_fail:
		e = errno;
		(void)!write(ep[1], &e, sizeof(e));
		_exit(127);
	}
	close(ep[1]);
	ep[1] = -1;
	do
		n = read(ep[0], &child_errno, sizeof(child_errno));
	while (n < 0 && errno == EINTR);
	if (n == (ssize_t)sizeof(child_errno)) {
		fprintf(stderr, "th_spawn: %s: %s\n", path, strerror(child_errno));
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		pid = -1;
	}
fail:
	if (ep[0] >= 0)
		close(ep[0]);
	if (ep[1] >= 0)
		close(ep[1]);
	if (logfd >= 0)
		close(logfd);
	free(envp);
	return pid;
}

pid_t
th_spawn(const char *const argv[], const char *const env[], const char *log_path)
{
	return th_spawn_as(argv, env, log_path, NULL);
}

int
th_kill(pid_t pid, int sig)
{
	if (pid <= 0)
		return -1;
	return kill(pid, sig) == 0 ? 0 : -1;
}

int
th_wait_exit(pid_t pid, int timeout_ms, int *status)
{
	long long deadline = th_now_ms() + timeout_ms;
	struct timespec ts = { 0, 5 * 1000 * 1000 };
	int st;

	if (pid <= 0)
		return -1;
	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid) {
			if (status != NULL)
				*status = st;
			return 0;
		}
		if (r < 0 && errno != EINTR)
			return -1;
		if (th_now_ms() >= deadline)
			return -1;
		nanosleep(&ts, NULL);
	}
}

int
th_stop(pid_t pid)
{
	int st;
	if (pid <= 0)
		return -1;
	if (kill(pid, SIGTERM) != 0 && errno != ESRCH)
		return -1;
	if (th_wait_exit(pid, 5000, &st) == 0)
		return st;
	fprintf(stderr, "th_stop: pid %d ignored SIGTERM for 5 s; SIGKILL\n", (int)pid);
	kill(pid, SIGKILL);
	if (th_wait_exit(pid, 5000, &st) == 0)
		return st;
	return -1;
}

int
th_run(const char *const argv[], const char *const env[], const char *log_path, int timeout_ms,
    int *status)
{
	pid_t pid = th_spawn(argv, env, log_path);
	if (pid < 0)
		return -1;
	if (th_wait_exit(pid, timeout_ms, status) == 0)
		return 0;
	fprintf(stderr, "th_run: %s did not exit within %d ms; SIGKILL\n", argv[0], timeout_ms);
	kill(pid, SIGKILL);
	(void)th_wait_exit(pid, 5000, NULL);
	return -1;
}
