#include <signal.h>
#if defined(__linux__)
#include <sys/prctl.h>
#endif

// prctl is variadic, which Swift cannot call, so the one request Epicycle makes is wrapped here.

// Asks the kernel to send SIGKILL to this process the moment its parent exits, however the parent
// ends. Returns 0 on success and -1 where the kernel has no such request (it is Linux's).
static inline int epicycle_kill_when_parent_exits(void) {
#if defined(PR_SET_PDEATHSIG)
    return prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
#else
    return -1;
#endif
}
