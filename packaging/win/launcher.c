/*
 * boxkeeper.exe: starts the bundled Node with the bundled agent and becomes it, as far as
 * Windows lets a parent: stdio inherited, exit code forwarded, and the child dies with us.
 *
 *   launcher.exe  (default)          <exe dir>\..\runtime\node.exe --max-semi-space-size=1
 *                                    <exe dir>\..\lib\boxkeeper.mjs ARGS
 *   standin.exe   (-DBOXKEEPER_STANDIN), copied as java.exe, FreeSwitchConsole.exe, fs_cli.exe:
 *                                    <node> <exe dir>\<own name without .exe>.mjs ARGS
 *                 with <node> = %BOXKEEPER_STANDIN_NODE%, else node.exe from PATH. Like Java,
 *                 it holds the file after -jar open (read/write sharing, no delete sharing)
 *                 while it runs: the jar cannot be replaced or deleted until it exits.
 *   entrypoint.exe (-DBOXKEEPER_ENTRYPOINT, GUI subsystem: no console window), the switch-over
 *                 launcher (docs/install.md, "The entrypoint launcher contract"): the first of
 *                 <exe dir>\boxkeeper, <exe dir>\boxkeeper-package,
 *                 <exe dir>\..\patch\<V>\boxkeeper-package with runtime\node.exe and
 *                 lib\boxkeeper.mjs runs  <pkg>\runtime\node.exe <pkg>\lib\boxkeeper.mjs
 *                 switch-over --from-patch <V> ARGS  (no window, CWD inherited). <V> is baked
 *                 into the slot after VERSION_MARKER by `boxkeeper patch pack --switch-over`.
 *
 * Why a Job object: killing this process (TerminateProcess, as the agent's tree kill and
 * Windows do) must not leave node running, and a Job with KILL_ON_JOB_CLOSE ends the child
 * when the last handle, ours, goes away.
 *
 * Build: x86_64-w64-mingw32-gcc -O2 -static -municode [-DBOXKEEPER_STANDIN] launcher.c
 *        ... -mwindows -DBOXKEEPER_ENTRYPOINT launcher.c -lshell32
 */
#define WIN32_LEAN_AND_MEAN
#ifndef UNICODE
#define UNICODE
#endif
#ifndef _UNICODE
#define _UNICODE
#endif
#include <windows.h>
#include <shellapi.h>
#include <stdlib.h>
#include <wchar.h>

#define BIG 32768

#ifdef BOXKEEPER_STANDIN
#define WHO L"boxkeeper standin"
#elif defined(BOXKEEPER_ENTRYPOINT)
#define WHO L"boxkeeper switch-over"
#else
#define WHO L"boxkeeper launcher"
#endif

static void fail_message(const wchar_t *what, const wchar_t *detail, DWORD err) {
    wchar_t sys[512] = L"";
    if (err != 0) {
        FormatMessageW(FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS, NULL, err, 0,
                       sys, sizeof sys / sizeof sys[0], NULL);
        size_t n = wcslen(sys);
        while (n > 0 && (sys[n - 1] == L'\r' || sys[n - 1] == L'\n' || sys[n - 1] == L' '))
            sys[--n] = 0;
    }
    static wchar_t line[BIG], code[32] = L"";
    if (err != 0) _snwprintf(code, 31, L" (error %lu)", (unsigned long)err);
    int n = _snwprintf(line, BIG - 1, L"%ls: %ls %ls%ls%ls%ls\r\n", WHO, what, detail,
                       sys[0] != 0 ? L": " : L"", sys, code);
    if (n < 0) n = (int)wcslen(line);
    line[BIG - 1] = 0;
    /* A console takes UTF-16; a file or pipe gets UTF-8, as node writes it. */
    HANDLE h = GetStdHandle(STD_ERROR_HANDLE);
    DWORD mode, written;
    if (h == NULL || h == INVALID_HANDLE_VALUE) return;
    if (GetConsoleMode(h, &mode)) {
        WriteConsoleW(h, line, (DWORD)n, &written, NULL);
        return;
    }
    static char utf8[BIG * 3];
    int len = WideCharToMultiByte(CP_UTF8, 0, line, n, utf8, sizeof utf8, NULL, NULL);
    if (len > 0) WriteFile(h, utf8, (DWORD)len, &written, NULL);
}

/* Appends s to buf (capacity BIG); 0 when it does not fit. */
static int append(wchar_t *buf, size_t *len, const wchar_t *s, size_t n) {
    if (*len + n + 1 > BIG) return 0;
    wmemcpy(buf + *len, s, n);
    *len += n;
    buf[*len] = 0;
    return 1;
}

/*
 * Appends one argument quoted so that the MSVCRT / CommandLineToArgvW parser of the child gives
 * it back unchanged: backslashes are literal except before a quote, where 2n (+1 for a literal
 * quote) are needed.
 */
static int append_arg(wchar_t *buf, size_t *len, const wchar_t *arg) {
    if (*len > 0 && !append(buf, len, L" ", 1)) return 0;
    if (arg[0] != 0 && wcspbrk(arg, L" \t\n\v\"") == NULL)
        return append(buf, len, arg, wcslen(arg));
    if (!append(buf, len, L"\"", 1)) return 0;
    for (const wchar_t *p = arg;; p++) {
        size_t backslashes = 0;
        while (*p == L'\\') {
            p++;
            backslashes++;
        }
        if (*p == 0) {
            /* Before the closing quote every backslash must be doubled. */
            for (size_t i = 0; i < backslashes * 2; i++)
                if (!append(buf, len, L"\\", 1)) return 0;
            break;
        }
        if (*p == L'"') {
            for (size_t i = 0; i < backslashes * 2 + 1; i++)
                if (!append(buf, len, L"\\", 1)) return 0;
        } else {
            for (size_t i = 0; i < backslashes; i++)
                if (!append(buf, len, L"\\", 1)) return 0;
        }
        if (!append(buf, len, p, 1)) return 0;
    }
    return append(buf, len, L"\"", 1);
}

/* Full path of this executable; *name points at its file name within it. */
static int own_path(wchar_t *path, wchar_t **name) {
    DWORD n = GetModuleFileNameW(NULL, path, BIG);
    if (n == 0 || n >= BIG) return 0;
    wchar_t *slash = wcsrchr(path, L'\\');
    wchar_t *fwd = wcsrchr(path, L'/');
    if (fwd != NULL && (slash == NULL || fwd > slash)) slash = fwd;
    *name = slash == NULL ? path : slash + 1;
    return 1;
}

#ifdef BOXKEEPER_ENTRYPOINT
/*
 * The patch version, baked in at pack time (services/switch-over.ts, bakeEntrypoint): the
 * marker, then VERSION_SLOT bytes of ASCII, NUL-padded. volatile: read at run time, never
 * folded by the compiler into the empty string it starts as.
 */
#define VERSION_MARKER "BOXKEEPER_SWITCH_OVER_VERSION="
#define VERSION_SLOT 64
__attribute__((used)) static volatile char baked_slot[sizeof VERSION_MARKER - 1 + VERSION_SLOT] =
    VERSION_MARKER;

/* The baked version as UTF-16 into v (VERSION_SLOT wide chars); 0 when none is baked. */
static int baked_version(wchar_t *v) {
    size_t i = 0;
    for (; i < VERSION_SLOT - 1; i++) {
        char c = baked_slot[sizeof VERSION_MARKER - 1 + i];
        if (c == 0) break;
        v[i] = (wchar_t)(unsigned char)c;
    }
    v[i] = 0;
    return i > 0;
}

static int is_file(const wchar_t *path) {
    DWORD a = GetFileAttributesW(path);
    return a != INVALID_FILE_ATTRIBUTES && (a & FILE_ATTRIBUTE_DIRECTORY) == 0;
}

/* The directory of the real file behind this exe (links resolved), with a trailing backslash. */
static int real_dir(const wchar_t *self, wchar_t *out) {
    HANDLE h = CreateFileW(self, 0, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL,
                           OPEN_EXISTING, FILE_FLAG_BACKUP_SEMANTICS, NULL);
    DWORD n = 0;
    if (h != INVALID_HANDLE_VALUE) {
        n = GetFinalPathNameByHandleW(h, out, BIG, FILE_NAME_NORMALIZED | VOLUME_NAME_DOS);
        CloseHandle(h);
    }
    if (n == 0 || n >= BIG) {
        if (wcslen(self) >= BIG) return 0;
        wcscpy(out, self);
    } else if (wcsncmp(out, L"\\\\?\\UNC\\", 8) == 0) {
        /* \\?\UNC\server\share -> \\server\share */
        memmove(out + 2, out + 8, (wcslen(out + 8) + 1) * sizeof(wchar_t));
    } else if (wcsncmp(out, L"\\\\?\\", 4) == 0) {
        memmove(out, out + 4, (wcslen(out + 4) + 1) * sizeof(wchar_t));
    }
    wchar_t *slash = wcsrchr(out, L'\\');
    wchar_t *fwd = wcsrchr(out, L'/');
    if (fwd != NULL && (slash == NULL || fwd > slash)) slash = fwd;
    if (slash == NULL) return 0;
    slash[1] = 0;
    return 1;
}
#endif

#ifndef BOXKEEPER_STANDIN
static int resolve_full(const wchar_t *in, wchar_t *out) {
    DWORD n = GetFullPathNameW(in, BIG, out, NULL);
    return n != 0 && n < BIG;
}
#endif

/*
 * Not SetConsoleCtrlHandler(NULL, TRUE): that "ignore Ctrl-C" flag is inherited, and node would
 * no longer see Ctrl-C either. A handler is not inherited. Closing the console still ends us
 * (and, through the job, node, which gets the same close event first).
 */
static BOOL WINAPI ignore_ctrl_c(DWORD type) {
    return type == CTRL_C_EVENT || type == CTRL_BREAK_EVENT;
}

static int run(int argc, wchar_t **argv) {
    static wchar_t self[BIG], node[BIG], script[BIG], cmd[BIG];
    wchar_t *name = NULL;
    if (!own_path(self, &name)) {
        fail_message(L"cannot find its own path", L"", GetLastError());
        return 1;
    }
    size_t dir_len = (size_t)(name - self); /* keeps the trailing separator */

#ifdef BOXKEEPER_STANDIN
    /* <exe dir>\<name without .exe>.mjs */
    size_t base_len = wcslen(name);
    if (base_len > 4 && _wcsicmp(name + base_len - 4, L".exe") == 0) base_len -= 4;
    if (dir_len + base_len + 5 >= BIG) return 1;
    wmemcpy(script, self, dir_len + base_len);
    wcscpy(script + dir_len + base_len, L".mjs");
    DWORD got = GetEnvironmentVariableW(L"BOXKEEPER_STANDIN_NODE", node, BIG);
    if (got == 0 || got >= BIG) {
        if (SearchPathW(NULL, L"node.exe", NULL, BIG, node, NULL) == 0) {
            fail_message(L"cannot find node.exe:", L"set BOXKEEPER_STANDIN_NODE or put node.exe on PATH",
                         GetLastError());
            return 1;
        }
    }
#elif defined(BOXKEEPER_ENTRYPOINT)
    (void)dir_len;
    static wchar_t version[VERSION_SLOT], dir[BIG], tmp[BIG], tried[BIG];
    if (!baked_version(version)) {
        /* `boxkeeper patch pack --switch-over` bakes it into its copy */
        fail_message(L"no patch version is baked into", self, 0);
        return 1;
    }
    if (!real_dir(self, dir)) {
        fail_message(L"cannot resolve its own directory", self, GetLastError());
        return 1;
    }
    const wchar_t *cands[3] = {L"boxkeeper", L"boxkeeper-package", NULL};
    static wchar_t patch_rel[BIG];
    _snwprintf(patch_rel, BIG - 1, L"..\\patch\\%ls\\boxkeeper-package", version);
    patch_rel[BIG - 1] = 0;
    cands[2] = patch_rel;
    static wchar_t pkg[BIG];
    int found = 0;
    size_t tried_len = 0;
    tried[0] = 0;
    for (int i = 0; i < 3 && !found; i++) {
        if (_snwprintf(tmp, BIG - 1, L"%ls%ls", dir, cands[i]) < 0) continue;
        tmp[BIG - 1] = 0;
        if (!resolve_full(tmp, pkg)) continue;
        if (tried_len > 0) append(tried, &tried_len, i == 2 ? L" or " : L", ", i == 2 ? 4 : 2);
        append(tried, &tried_len, pkg, wcslen(pkg));
        if (_snwprintf(node, BIG - 1, L"%ls\\runtime\\node.exe", pkg) < 0) continue;
        if (_snwprintf(script, BIG - 1, L"%ls\\lib\\boxkeeper.mjs", pkg) < 0) continue;
        node[BIG - 1] = script[BIG - 1] = 0;
        found = is_file(node) && is_file(script);
    }
    if (!found) {
        fail_message(L"no boxkeeper package (runtime\\node.exe and lib\\boxkeeper.mjs) in", tried, 0);
        return 1;
    }
#else
    /* <exe dir>\..\runtime\node.exe and <exe dir>\..\lib\boxkeeper.mjs */
    static wchar_t tmp[BIG];
    if (dir_len + 32 >= BIG) return 1;
    wmemcpy(tmp, self, dir_len);
    wcscpy(tmp + dir_len, L"..\\runtime\\node.exe");
    if (!resolve_full(tmp, node)) return 1;
    wcscpy(tmp + dir_len, L"..\\lib\\boxkeeper.mjs");
    if (!resolve_full(tmp, script)) return 1;
#endif
#ifdef BOXKEEPER_STANDIN
    /*
     * Java opens its jar with read/write sharing but no delete sharing and keeps it open: the
     * jar cannot be renamed over or deleted while Java runs. Held until we exit; not inherited.
     */
    for (int i = 1; i + 1 < argc; i++)
        if (wcscmp(argv[i], L"-jar") == 0) {
            CreateFileW(argv[i + 1], GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE, NULL,
                        OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, NULL);
            break;
        }
#endif
    if (GetFileAttributesW(script) == INVALID_FILE_ATTRIBUTES) {
        fail_message(L"script not found:", script, GetLastError());
        return 1;
    }

    size_t len = 0;
    cmd[0] = 0;
    int ok = append_arg(cmd, &len, node);
#ifndef BOXKEEPER_STANDIN
    /* PACKAGE_NODE_FLAGS of adapters/agent-install.ts (a unit test holds the two together). */
    ok = ok && append_arg(cmd, &len, L"--max-semi-space-size=1");
#endif
    ok = ok && append_arg(cmd, &len, script);
#ifdef BOXKEEPER_ENTRYPOINT
    ok = ok && append_arg(cmd, &len, L"switch-over") && append_arg(cmd, &len, L"--from-patch") &&
         append_arg(cmd, &len, version);
#endif
    for (int i = 1; ok && i < argc; i++) ok = append_arg(cmd, &len, argv[i]);
    if (!ok) {
        fail_message(L"command line too long for", node, 0);
        return 1;
    }

    /* Ctrl-C reaches node too (same console); node decides, we wait for its exit code. */
    SetConsoleCtrlHandler(ignore_ctrl_c, TRUE);

    HANDLE job = CreateJobObjectW(NULL, NULL);
    if (job != NULL) {
        JOBOBJECT_EXTENDED_LIMIT_INFORMATION info;
        ZeroMemory(&info, sizeof info);
        /*
         * Only node itself is in the job: what it starts breaks away silently. The agent's
         * services (spawned detached) must outlive it, as on Linux; node's other children are
         * in libuv's own kill-on-close job already.
         */
        info.BasicLimitInformation.LimitFlags =
            JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE | JOB_OBJECT_LIMIT_SILENT_BREAKAWAY_OK;
        if (!SetInformationJobObject(job, JobObjectExtendedLimitInformation, &info, sizeof info)) {
            CloseHandle(job);
            job = NULL;
        }
    }

    STARTUPINFOW si;
    ZeroMemory(&si, sizeof si);
    si.cb = sizeof si;
    si.dwFlags = STARTF_USESTDHANDLES;
    si.hStdInput = GetStdHandle(STD_INPUT_HANDLE);
    si.hStdOutput = GetStdHandle(STD_OUTPUT_HANDLE);
    si.hStdError = GetStdHandle(STD_ERROR_HANDLE);
    HANDLE std[3] = {si.hStdInput, si.hStdOutput, si.hStdError};
    for (int i = 0; i < 3; i++)
        if (std[i] != NULL && std[i] != INVALID_HANDLE_VALUE)
            SetHandleInformation(std[i], HANDLE_FLAG_INHERIT, HANDLE_FLAG_INHERIT);

    PROCESS_INFORMATION pi;
    ZeroMemory(&pi, sizeof pi);
    /* Suspended until it is in the job, so not even an early grandchild escapes it. */
    DWORD flags = CREATE_SUSPENDED | CREATE_UNICODE_ENVIRONMENT;
#ifdef BOXKEEPER_ENTRYPOINT
    flags |= CREATE_NO_WINDOW; /* node is a console program: no console window for it either */
#endif
    BOOL created = CreateProcessW(node, cmd, NULL, NULL, TRUE, flags | CREATE_BREAKAWAY_FROM_JOB,
                                  NULL, NULL, &si, &pi);
    if (!created) /* our own job may forbid breakaway; a nested job still works */
        created = CreateProcessW(node, cmd, NULL, NULL, TRUE, flags, NULL, NULL, &si, &pi);
    if (!created) {
        fail_message(L"cannot start", node, GetLastError());
        return 1;
    }
    if (job != NULL && !AssignProcessToJobObject(job, pi.hProcess)) {
        /* Still run it: a service that works beats one that cannot start. */
        CloseHandle(job);
        job = NULL;
    }
    ResumeThread(pi.hThread);
    CloseHandle(pi.hThread);

    WaitForSingleObject(pi.hProcess, INFINITE);
    DWORD code = 1;
    if (!GetExitCodeProcess(pi.hProcess, &code)) code = 1;
    CloseHandle(pi.hProcess);
    if (job != NULL) CloseHandle(job);
    return (int)code;
}

#ifdef BOXKEEPER_ENTRYPOINT
/* A GUI-subsystem program (-mwindows): Windows opens no console window for it. */
int WINAPI wWinMain(HINSTANCE inst, HINSTANCE prev, LPWSTR line, int show) {
    (void)inst;
    (void)prev;
    (void)line;
    (void)show;
    int argc = 0;
    wchar_t **argv = CommandLineToArgvW(GetCommandLineW(), &argc);
    if (argv == NULL) {
        fail_message(L"cannot parse its command line", L"", GetLastError());
        return 1;
    }
    return run(argc, argv);
}
#else
int wmain(int argc, wchar_t **argv) { return run(argc, argv); }
#endif
