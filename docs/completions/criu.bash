# bash completion for criu and crit (generated from criu's option table)
_criu() {
local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"
case "$prev" in
        -t|--tree) COMPREPLY=(); return ;;
        -D|--images-dir) COMPREPLY=($(compgen -d -- "$cur")); return ;;
        -W|--work-dir) COMPREPLY=($(compgen -d -- "$cur")); return ;;
        -o|--log-file) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        -J|--join-ns) COMPREPLY=($(compgen -W "net ipc uts time mnt user" -- "$cur")); return ;;
        -r|--root) COMPREPLY=($(compgen -d -- "$cur")); return ;;
        --close) COMPREPLY=(); return ;;
        --pidfile) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        --veth-pair) COMPREPLY=(); return ;;
        --action-script) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        --address) COMPREPLY=(); return ;;
        --port) COMPREPLY=(); return ;;
        --prev-images-dir) COMPREPLY=($(compgen -d -- "$cur")); return ;;
        -L|--libdir) COMPREPLY=($(compgen -d -- "$cur")); return ;;
        -M|--ext-mount-map) COMPREPLY=(); return ;;
        --cgroup-root) COMPREPLY=(); return ;;
        --inherit-fd) COMPREPLY=(); return ;;
        --feature) COMPREPLY=($(compgen -W "mnt_id mem_dirty_track aio_remap timerfd tun tun_ns userns fdinfo_lock seccomp_suspend seccomp_filters loginuid cgroupns autofs tcp_half_closed compat_cr uffd uffd-noncoop can_map_vdso sk_ns sk_unix_file net_diag_raw nsid link_nsid kcmp_epoll timens external_net_ns clone3_set_tid newifindex nftables has_ipt_legacy pidfd_store ns_pid apparmor_stacking network_lock_nftables sockopt_buf_lock memfd_hugetlb move_mount_set_group openat2 get_rseq_conf ipv6_freebind pagemap_scan timer_cr_ids overlayfs_maps breakpoints pagemap_scan_guard_pages list" -- "$cur")); return ;;
        --skip-mnt) COMPREPLY=($(compgen -d -- "$cur")); return ;;
        --enable-fs) COMPREPLY=(); return ;;
        --freeze-cgroup) COMPREPLY=($(compgen -d -- "$cur")); return ;;
        --ghost-limit) COMPREPLY=(); return ;;
        --irmap-scan-path) COMPREPLY=($(compgen -d -- "$cur")); return ;;
        --lsm-profile) COMPREPLY=(); return ;;
        --timeout) COMPREPLY=(); return ;;
        --external) COMPREPLY=(); return ;;
        --empty-ns) COMPREPLY=($(compgen -W "net" -- "$cur")); return ;;
        --cgroup-props) COMPREPLY=(); return ;;
        --cgroup-props-file) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        --cgroup-dump-controller) COMPREPLY=(); return ;;
        --status-fd) COMPREPLY=(); return ;;
        --ps-socket) COMPREPLY=(); return ;;
        --config) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        --tls-cacert) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        --tls-cacrl) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        --tls-cert) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        --tls-key) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        --cgroup-yard) COMPREPLY=($(compgen -d -- "$cur")); return ;;
        --pre-dump-mode) COMPREPLY=($(compgen -W "splice read" -- "$cur")); return ;;
        --file-validation) COMPREPLY=($(compgen -W "filesize buildid" -- "$cur")); return ;;
        --lsm-mount-context) COMPREPLY=(); return ;;
        --network-lock) COMPREPLY=($(compgen -W "iptables nftables skip" -- "$cur")); return ;;
    esac
case "$cur" in
--manage-cgroups=*) COMPREPLY=($(compgen -P --manage-cgroups= -W "none props soft full strict ignore" -- "${cur#*=}")); return ;;
-*) COMPREPLY=($(compgen -W "-t --tree -s --leave-stopped -R --leave-running -d --restore-detached -S --restore-sibling --daemon -D --images-dir -W --work-dir -o --log-file -J --join-ns -r --root -x --ext-unix-sk -h --help --tcp-established --close --log-pid -V --version --evasive-devices --pidfile --veth-pair --action-script --link-remap -j --shell-job -l --file-locks --page-server --address --port --prev-images-dir --ms --track-mem --auto-dedup -L --libdir --cpu-cap --force-irmap -M --ext-mount-map --exec-cmd --manage-cgroups --cgroup-root --inherit-fd --feature --skip-mnt --enable-fs --enable-external-sharing --enable-external-masters --freeze-cgroup --ghost-limit --irmap-scan-path --lsm-profile --timeout --external --empty-ns --lazy-pages --extra --experimental --all --cgroup-props --cgroup-props-file --cgroup-dump-controller --skip-in-flight --deprecated --display-stats --weak-sysctls --status-fd --tcp-close -v --verbosity --ps-socket --stream --config --no-default-config --tls-cacert --tls-cacrl --tls-cert --tls-key --tls --tls-no-cn-verify --cgroup-yard --pre-dump-mode --file-validation --skip-file-rwx-check --lsm-mount-context --network-lock --mntns-compat-mode --unprivileged --ghost-fiemap --allow-uprobes" -- "$cur")); return ;;
esac
local w
for w in "${COMP_WORDS[@]:1:COMP_CWORD-1}"; do
case " dump pre-dump restore check page-server service swrk lazy-pages dedup exec cpuinfo " in *" $w "*) COMPREPLY=(); return ;; esac
done
COMPREPLY=($(compgen -W "dump pre-dump restore check page-server service swrk lazy-pages dedup exec cpuinfo" -- "$cur"))
}
complete -F _criu criu

_crit() {
local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"
case "$prev" in
-i|--in|info|show) COMPREPLY=($(compgen -f -X '!*.img' -- "$cur") $(compgen -d -- "$cur")); return ;;
-o|--out) COMPREPLY=($(compgen -f -- "$cur")); return ;;
x) COMPREPLY=($(compgen -d -- "$cur")); return ;;
esac
if [ "$COMP_CWORD" -eq 1 ]; then
COMPREPLY=($(compgen -W "decode encode info x show -h --help --version" -- "$cur"))
elif [ "${COMP_WORDS[1]}" = x ] && [ "$COMP_CWORD" -eq 3 ]; then
COMPREPLY=($(compgen -W "ps fds mems rss" -- "$cur"))
else
COMPREPLY=($(compgen -W "-i --in -o --out --pretty --nopl -h --help" -- "$cur"))
fi
}
complete -F _crit crit
