"""The system's own accounts: passwd lookups and PAM password checks.

This is the chapter's classic setup (§12.4.4): POP and IMAP users are UNIX
accounts, checked against the system's password database.  posthouse reaches
it through ``pwd`` for account data and through PAM, called with ``ctypes``
on ``libpam.so.0`` so no extra dependency is needed.  Where PAM is missing,
:func:`pam_authenticate` simply answers ``False``.

Only ordinary accounts count as mail users: uid from ``min_uid`` (1000, as
Debian's ``login.defs`` UID_MIN) up to ``max_uid`` (60000, UID_MAX), which
leaves out root, system daemons and ``nobody``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import pwd
from dataclasses import dataclass
from typing import Any

from posthouse.auth.users import InvalidUserName, ServiceType, User, normalize_name

__all__ = ["DEFAULT_MAX_UID", "DEFAULT_MIN_UID", "pam_authenticate", "system_user"]

DEFAULT_MIN_UID = 1000
DEFAULT_MAX_UID = 60000


def system_user(
    name: str, *, min_uid: int = DEFAULT_MIN_UID, max_uid: int = DEFAULT_MAX_UID
) -> User | None:
    """Return the system account *name* as a :class:`User`, or ``None``.

    The name is folded to lower case like posthouse's own names (so a system
    account whose name has capitals is not found); the service type is UNIX.
    """
    try:
        key = normalize_name(name)
    except InvalidUserName:
        return None
    try:
        entry = pwd.getpwnam(key)
    except KeyError:
        return None
    if not min_uid <= entry.pw_uid <= max_uid:
        return None
    return User(
        name=entry.pw_name,
        password_hash=None,
        service_type=ServiceType.UNIX,
        uid=entry.pw_uid,
        gid=entry.pw_gid,
        home=entry.pw_dir,
        source="system",
    )


# -- PAM through ctypes ---------------------------------------------------------
# Constants from Linux-PAM's <security/_pam_types.h>.
_PAM_SUCCESS = 0
_PAM_BUF_ERR = 5
_PAM_CONV_ERR = 19
_PAM_PROMPT_ECHO_OFF = 1
_PAM_PROMPT_ECHO_ON = 2
_PAM_FAIL_DELAY = 10  # item type for pam_set_item


class _PamMessage(ctypes.Structure):
    _fields_ = [("msg_style", ctypes.c_int), ("msg", ctypes.c_char_p)]


class _PamResponse(ctypes.Structure):
    _fields_ = [("resp", ctypes.c_void_p), ("resp_retcode", ctypes.c_int)]


_CONV_FUNC = ctypes.CFUNCTYPE(
    ctypes.c_int,
    ctypes.c_int,
    ctypes.POINTER(ctypes.POINTER(_PamMessage)),
    ctypes.POINTER(ctypes.POINTER(_PamResponse)),
    ctypes.c_void_p,
)
_DELAY_FUNC = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p)


class _PamConv(ctypes.Structure):
    _fields_ = [("conv", _CONV_FUNC), ("appdata_ptr", ctypes.c_void_p)]


@dataclass(frozen=True)
class _Pam:
    libpam: ctypes.CDLL
    libc: ctypes.CDLL
    start_confdir: Any  # ctypes function pam_start_confdir, or None before Linux-PAM 1.4


@functools.cache
def _load_pam() -> _Pam | None:
    """Load libpam and libc and declare the functions used, or ``None`` if unavailable."""
    try:
        libpam = ctypes.CDLL("libpam.so.0")
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    handle_p = ctypes.c_void_p
    libpam.pam_start.argtypes = [
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.POINTER(_PamConv),
        ctypes.POINTER(handle_p),
    ]
    libpam.pam_start.restype = ctypes.c_int
    libpam.pam_set_item.argtypes = [handle_p, ctypes.c_int, ctypes.c_void_p]
    libpam.pam_set_item.restype = ctypes.c_int
    libpam.pam_authenticate.argtypes = [handle_p, ctypes.c_int]
    libpam.pam_authenticate.restype = ctypes.c_int
    libpam.pam_acct_mgmt.argtypes = [handle_p, ctypes.c_int]
    libpam.pam_acct_mgmt.restype = ctypes.c_int
    libpam.pam_end.argtypes = [handle_p, ctypes.c_int]
    libpam.pam_end.restype = ctypes.c_int
    libc.calloc.argtypes = [ctypes.c_size_t, ctypes.c_size_t]
    libc.calloc.restype = ctypes.c_void_p
    libc.strdup.argtypes = [ctypes.c_char_p]
    libc.strdup.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    libc.free.restype = None
    start_confdir = getattr(libpam, "pam_start_confdir", None)
    if start_confdir is not None:
        start_confdir.argtypes = [
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.POINTER(_PamConv),
            ctypes.c_char_p,
            ctypes.POINTER(handle_p),
        ]
        start_confdir.restype = ctypes.c_int
    return _Pam(libpam, libc, start_confdir)


def pam_available() -> bool:
    """Whether libpam could be loaded."""
    return _load_pam() is not None


def pam_authenticate(
    name: str,
    password: str,
    service: str = "login",
    *,
    confdir: str | os.PathLike[str] | None = None,
) -> bool:
    """Check *password* for system account *name* with PAM service *service*.

    Runs ``pam_authenticate`` then ``pam_acct_mgmt`` (so expired or locked
    accounts fail).  PAM's own blocking failure delay (``pam_faildelay``,
    ``pam_unix``) is switched off through ``PAM_FAIL_DELAY``: the caller
    (:class:`posthouse.auth.authenticator.Authenticator`) applies its own
    delay without holding a thread.  Blocking; run it in a worker thread from
    async code.  Answers ``False`` when PAM is unavailable.

    *confdir* names a PAM configuration directory to use instead of
    ``/etc/pam.d`` (``pam_start_confdir``, Linux-PAM 1.4 and later).
    """
    pam = _load_pam()
    if pam is None:
        return False
    try:
        user_b = name.encode()
        password_b = password.encode()
        service_b = service.encode()
        confdir_b = None if confdir is None else os.fsencode(confdir)
    except UnicodeEncodeError:
        return False
    if b"\0" in user_b + password_b + service_b + (confdir_b or b"") or not user_b:
        return False
    libc = pam.libc

    def converse(
        count: int,
        messages: ctypes._Pointer[ctypes._Pointer[_PamMessage]],
        responses: ctypes._Pointer[ctypes._Pointer[_PamResponse]],
        _appdata: int | None,
    ) -> int:
        # Linux-PAM passes an array of pointers to messages; the answers are one
        # calloc'd array whose strings PAM frees.
        if count <= 0:
            return _PAM_CONV_ERR
        address = libc.calloc(count, ctypes.sizeof(_PamResponse))
        if not address:
            return _PAM_BUF_ERR
        answers = ctypes.cast(address, ctypes.POINTER(_PamResponse))
        try:
            for i in range(count):
                if messages[i].contents.msg_style in (_PAM_PROMPT_ECHO_OFF, _PAM_PROMPT_ECHO_ON):
                    answers[i].resp = libc.strdup(password_b)
                    answers[i].resp_retcode = 0
        except Exception:
            # An exception escaping a ctypes callback would return 0, PAM_SUCCESS.
            for i in range(count):
                libc.free(answers[i].resp)
            libc.free(address)
            return _PAM_CONV_ERR
        responses[0] = answers
        return _PAM_SUCCESS

    def no_delay(_retval: int, _usec: int, _appdata: int | None) -> None:
        return None

    conv_callback = _CONV_FUNC(converse)
    delay_callback = _DELAY_FUNC(no_delay)
    conv = _PamConv(conv_callback, None)
    handle = ctypes.c_void_p()
    if confdir_b is None:
        status: int = pam.libpam.pam_start(
            service_b, user_b, ctypes.byref(conv), ctypes.byref(handle)
        )
    elif pam.start_confdir is None:
        return False
    else:
        status = pam.start_confdir(
            service_b, user_b, ctypes.byref(conv), confdir_b, ctypes.byref(handle)
        )
    if status != _PAM_SUCCESS:
        return False
    try:
        pam.libpam.pam_set_item(
            handle, _PAM_FAIL_DELAY, ctypes.cast(delay_callback, ctypes.c_void_p)
        )
        status = pam.libpam.pam_authenticate(handle, 0)
        if status == _PAM_SUCCESS:
            status = pam.libpam.pam_acct_mgmt(handle, 0)
    finally:
        pam.libpam.pam_end(handle, status)
    return status == _PAM_SUCCESS
