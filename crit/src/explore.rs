//! `crit x DIR {ps,fds,mems,rss}`: summaries of a whole image directory, in crit's layout.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use criu_proto::json::{decode_image, DecodeOptions};
use serde_json::Value;

type Res<T> = Result<T, String>;

pub fn explore(dir: &Path, what: &str) -> Res<String> {
    let mut x = Explorer {
        dir,
        files: None,
        images: HashMap::new(),
        cache: HashMap::new(),
    };
    match what {
        "ps" => x.ps(),
        "fds" => x.fds(),
        "mems" => x.mems(),
        "rss" => x.rss(),
        other => Err(format!("unknown explorer {other}")),
    }
}

struct Explorer<'a> {
    dir: &'a Path,
    /// files.img entries, when the dump has one.
    files: Option<Vec<Value>>,
    /// Per-type images (reg-files.img, ...) loaded on demand.
    images: HashMap<&'static str, Vec<Value>>,
    cache: HashMap<(String, u64), String>,
}

fn int(v: &Value, key: &str) -> i64 {
    v.get(key)
        .and_then(|x| x.as_i64().or_else(|| x.as_u64().map(|u| u as i64)))
        .unwrap_or(0)
}

/// crit's get_task_id: the plain field, else the first of the ns_ list.
fn task_id(p: &Value, key: &str) -> i64 {
    match p.get(key) {
        Some(v) => v.as_i64().unwrap_or(0),
        None => p
            .get(format!("ns_{key}"))
            .and_then(|l| l.get(0))
            .and_then(Value::as_i64)
            .unwrap_or(0),
    }
}

impl Explorer<'_> {
    fn load(&self, name: &str) -> Res<Vec<Value>> {
        let path = self.dir.join(name);
        let shown = path.display().to_string();
        let data = std::fs::read(&path).map_err(|e| format!("{shown}: {e}"))?;
        let image =
            decode_image(&shown, &data, DecodeOptions::default()).map_err(|e| e.to_string())?;
        Ok(image["entries"].as_array().cloned().unwrap_or_default())
    }

    fn first(&self, name: &str) -> Res<Value> {
        self.load(name)?
            .into_iter()
            .next()
            .ok_or_else(|| format!("{name}: no entries"))
    }

    fn pstree(&self) -> Res<Vec<Value>> {
        self.load("pstree.img")
    }

    fn ps(&mut self) -> Res<String> {
        struct Task {
            pid: i64,
            ppid: i64,
            pgid: i64,
            sid: i64,
            comm: String,
            kids: Vec<usize>,
        }
        let mut tasks: Vec<Task> = Vec::new();
        for p in self.pstree()? {
            let pid = task_id(&p, "pid");
            let core = self.first(&format!("core-{pid}.img"))?;
            let comm = core["tc"]["comm"].as_str().unwrap_or("").to_string();
            let (ppid, pgid, sid) = (int(&p, "ppid"), task_id(&p, "pgid"), task_id(&p, "sid"));
            tasks.push(Task {
                pid,
                ppid,
                pgid,
                sid,
                comm,
                kids: Vec::new(),
            });
        }
        let mut root = None;
        for i in 0..tasks.len() {
            if tasks[i].ppid == 0 {
                root = Some(i);
                continue;
            }
            let parent = tasks
                .iter()
                .position(|t| t.pid == tasks[i].ppid)
                .ok_or_else(|| {
                    format!(
                        "task {} has parent {} that is not in pstree.img",
                        tasks[i].pid, tasks[i].ppid
                    )
                })?;
            tasks[parent].kids.push(i);
        }
        let mut out = format!("{:>7}{:>7}{:>7}   {}\n", "PID", "PGID", "SID", "COMM");
        fn show(tasks: &[Task], i: usize, depth: usize, out: &mut String) {
            let t = &tasks[i];
            let _ = writeln!(
                out,
                "{:>7}{:>7}{:>7}   {}{}",
                t.pid,
                t.pgid,
                t.sid,
                " ".repeat(4 * depth),
                t.comm
            );
            for &kid in &t.kids {
                show(tasks, kid, depth + 1, out);
            }
        }
        if let Some(root) = root {
            show(&tasks, root, 0, &mut out);
        }
        Ok(out)
    }

    /// The entry for `id` from files.img (its `field` part), else from the type's own image.
    fn find_file(&mut self, field: &str, image: &'static str, id: u64) -> Option<Value> {
        if self.files.is_none() {
            self.files = Some(self.load("files.img").unwrap_or_default());
        }
        let files = self.files.as_deref().unwrap_or_default();
        if !files.is_empty() {
            if let Some(f) = files.iter().find(|f| int(f, "id") as u64 == id) {
                return f.get(field).cloned();
            }
        }
        if !self.images.contains_key(image) {
            let loaded = self.load(image).unwrap_or_default();
            self.images.insert(image, loaded);
        }
        self.images
            .get(image)?
            .iter()
            .find(|f| int(f, "id") as u64 == id)
            .cloned()
    }

    fn file_str(&mut self, ftype: &str, id: u64) -> String {
        let key = (ftype.to_string(), id);
        if let Some(known) = self.cache.get(&key) {
            return known.clone();
        }
        let text = match ftype {
            "REG" => self
                .find_file("reg", "reg-files.img", id)
                .and_then(|f| f.get("name").and_then(Value::as_str).map(str::to_string))
                .filter(|name| !name.is_empty())
                .unwrap_or_else(|| "unknown path".to_string()),
            "PIPE" => match self.find_file("pipe", "pipes.img", id) {
                Some(p) => format!("pipe[{}]", int(&p, "pipe_id")),
                None => "pipe[?]".to_string(),
            },
            "UNIXSK" => match self.find_file("usk", "unixsk.img", id) {
                Some(ux) => {
                    let name = ux.get("name").and_then(Value::as_str).unwrap_or("");
                    let name = if name.is_empty() {
                        String::new()
                    } else {
                        format!(" {name}")
                    };
                    format!("unix[{} ({}){}]", int(&ux, "ino"), int(&ux, "peer"), name)
                }
                None => "unix[?]".to_string(),
            },
            other => format!("{other}.{id}"),
        };
        self.cache.insert(key, text.clone());
        text
    }

    fn fds(&mut self) -> Res<String> {
        let mut out = String::new();
        for p in self.pstree()? {
            let pid = task_id(&p, "pid");
            let ids = self.first(&format!("ids-{pid}.img"))?;
            let fdinfo = self.load(&format!("fdinfo-{}.img", int(&ids, "files_id")))?;
            let _ = writeln!(out, "{pid}");
            for fd in &fdinfo {
                let ftype = fd["type"].as_str().unwrap_or("UND").to_string();
                let text = self.file_str(&ftype, int(fd, "id") as u64);
                let _ = writeln!(out, "\t{:>7}: {}", int(fd, "fd"), text);
            }
            let fs = self.first(&format!("fs-{pid}.img"))?;
            for (label, key) in [("cwd", "cwd_id"), ("root", "root_id")] {
                let text = self.file_str("REG", int(&fs, key) as u64);
                let _ = writeln!(out, "\t{label:>7}: {text}");
            }
        }
        Ok(out)
    }

    fn mems(&mut self) -> Res<String> {
        let mut out = String::new();
        let mut shared_ids: HashMap<i64, u64> = HashMap::new();
        for p in self.pstree()? {
            let pid = task_id(&p, "pid");
            let mm = self.first(&format!("mm-{pid}.img"))?;
            let _ = writeln!(out, "{pid}");
            let exe = self.file_str("REG", int(&mm, "exe_file_id") as u64);
            let _ = writeln!(out, "\t{:<36}    {}", "exe", exe);
            for vma in mm["vmas"].as_array().cloned().unwrap_or_default() {
                let st = int(&vma, "status");
                let shmid = int(&vma, "shmid");
                let mut short_id = |id: i64| {
                    let next = shared_ids.len() as u64 + 1;
                    *shared_ids.entry(id).or_insert(next)
                };
                let mut name = if st & (1 << 10) != 0 {
                    format!(" ips[{:x}]", short_id(shmid))
                } else if st & (1 << 8) != 0 {
                    format!(" shmem[{:x}]", short_id(shmid))
                } else if st & (1 << 11) != 0 {
                    format!(" packet[{:x}]", short_id(shmid))
                } else if st & ((1 << 6) | (1 << 7)) != 0 {
                    let mut s = format!(" {}", self.file_str("REG", shmid as u64));
                    if int(&vma, "pgoff") != 0 {
                        s += &format!(" + {:#x}", int(&vma, "pgoff"));
                    }
                    if st & (1 << 7) != 0 {
                        s += " (s)";
                    }
                    s
                } else if st & (1 << 1) != 0 {
                    " [stack]".to_string()
                } else if st & (1 << 2) != 0 {
                    " [vsyscall]".to_string()
                } else if st & (1 << 3) != 0 {
                    " [vdso]".to_string()
                } else if int(&vma, "flags") & 0x100 != 0 {
                    " [stack?]".to_string()
                } else {
                    String::new()
                };
                if st & 1 == 0 {
                    name += " *";
                }
                let prot = int(&vma, "prot");
                let prot: String = [(1, 'r'), (2, 'w'), (4, 'x')]
                    .iter()
                    .map(|&(bit, c)| if prot & bit != 0 { c } else { '-' })
                    .collect();
                let range = format!("{:08x}-{:08x}", int(&vma, "start"), int(&vma, "end"));
                let _ = writeln!(out, "\t{range:<36}{prot}{name}");
            }
        }
        Ok(out)
    }

    fn rss(&mut self) -> Res<String> {
        let mut out = String::new();
        for p in self.pstree()? {
            let pid = task_id(&p, "pid");
            let vmas = self.first(&format!("mm-{pid}.img"))?["vmas"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let pms = self.load(&format!("pagemap-{pid}.img"))?;
            let _ = writeln!(out, "{pid}");
            let mut vmi: i64 = 0;
            let mut pvmi: i64 = -1;
            // Python list indexing: -1 is the last element (crit relies on it after `vmi -= 1`).
            let vma_at = |i: i64| {
                let i = if i < 0 { i + vmas.len() as i64 } else { i };
                usize::try_from(i).ok().and_then(|i| vmas.get(i))
            };
            let field = |i: i64, key: &str| vma_at(i).map(|v| int(v, key));
            for pm in pms.iter().skip(1) {
                let vaddr = int(pm, "vaddr");
                let nr_pages = pm
                    .get("nr_pages")
                    .map_or_else(|| int(pm, "compat_nr_pages"), |_| int(pm, "nr_pages"));
                let pstr = format!("\t{vaddr:x} / {nr_pages:<8}");
                while vmi < vmas.len() as i64 && field(vmi, "end").is_some_and(|end| end <= vaddr) {
                    vmi += 1;
                }
                let pme = vaddr + (nr_pages << 12);
                let mut vstr = String::new();
                while vmi < vmas.len() as i64
                    && field(vmi, "start").is_some_and(|start| start < pme)
                {
                    let Some(vma) = vma_at(vmi) else { break };
                    if vmi == pvmi {
                        vstr += " ~";
                    } else {
                        let (start, end) = (int(vma, "start"), int(vma, "end"));
                        vstr += &format!(" {:08x} / {:<8}", start, (end - start) >> 12);
                        if int(vma, "status") & ((1 << 6) | (1 << 7)) != 0 {
                            let file = self.file_str("REG", int(vma, "shmid") as u64);
                            vstr += &format!(" {file}");
                        }
                        pvmi = vmi;
                    }
                    vstr += &format!("\n\t{:>23}", "");
                    vmi += 1;
                }
                vmi -= 1;
                let _ = writeln!(out, "{pstr:<24}{vstr}");
            }
        }
        Ok(out)
    }
}
