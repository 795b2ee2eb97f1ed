"""posthouse.store.mbox.mounts: is the spool directory the mailbox server's NFS export?"""

from __future__ import annotations

from pathlib import Path

from posthouse.store.mbox.mounts import Mount, mount_of, parse_mountinfo, spool_problem

MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:35 / /var/spool/mail rw,relatime shared:20 - nfs4 mailhub.nyc.dec.com:/var/spool/mail rw
41 22 0:36 / /srv/other\\040spool rw - nfs [2001:db8::1]:/export rw
42 22 0:37 / /var/spool/mail/local rw - tmpfs tmpfs rw
43 22 0:38 / /mnt/broken rw
"""


def test_parse_mountinfo() -> None:
    mounts = parse_mountinfo(MOUNTINFO)
    assert mounts == [
        Mount("/", "ext4", "/dev/sda1"),
        Mount("/var/spool/mail", "nfs4", "mailhub.nyc.dec.com:/var/spool/mail"),
        Mount("/srv/other spool", "nfs", "[2001:db8::1]:/export"),
        Mount("/var/spool/mail/local", "tmpfs", "tmpfs"),
    ]
    assert mounts[1].nfs_host == "mailhub.nyc.dec.com"
    assert mounts[2].nfs_host == "2001:db8::1"
    assert mounts[0].nfs_host is None


def test_the_longest_mount_point_wins() -> None:
    mounts = parse_mountinfo(MOUNTINFO)
    assert mount_of(Path("/var/spool/mail"), mounts) == mounts[1]
    assert mount_of(Path("/var/spool/mail/local/x"), mounts) == mounts[3]
    assert mount_of(Path("/var/spool/mailx"), mounts) == mounts[0]


def test_a_spool_mounted_from_the_mailbox_server_is_right() -> None:
    mounts = parse_mountinfo(MOUNTINFO)
    spool = Path("/var/spool/mail")
    assert spool_problem(spool, "mailhub.nyc.dec.com", mounts) is None
    assert spool_problem(spool, "MAILHUB", mounts) is None  # the short name, as typed
    assert spool_problem(Path("/srv/other spool"), "2001:db8::1", mounts) is None


def test_a_spool_from_elsewhere_or_not_mounted_is_named() -> None:
    mounts = parse_mountinfo(MOUNTINFO)
    spool = Path("/var/spool/mail")
    wrong = spool_problem(spool, "mailhub.sf.dec.com", mounts)
    assert wrong is not None and "mounted from mailhub.nyc.dec.com, not from" in wrong
    local = spool_problem(Path("/var/mail"), "mailhub.nyc.dec.com", mounts)
    assert local is not None
    assert "is not mounted from the mailbox server mailhub.nyc.dec.com" in local
    assert "ext4 /dev/sda1" in local
    assert spool_problem(spool, "x", []) is not None
