//! What a dispatch ran, found cheaply enough to do on every dispatch: a Python function or
//! method is its code object (pointer reads, no attribute lookup); a task step is its task's
//! coroutine's code object, whatever wrapper asyncio used (`TaskStepMethWrapper`, the task's
//! bound `task_wakeup`, or the pure-Python task's bound `__step`); anything else is its type or
//! its C function.
//!
//! The attributes a task step needs (`wrapper.__self__`, `task._coro`, `coro.cr_code`) are C
//! getters of built-in types: each is looked up once per type and then called directly
//! (`FastAttr`), which costs a fraction of a `getattr`.

use std::cell::{Cell, RefCell};
use std::ffi::c_void;

use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::{GILOnceCell, GILProtected};
use pyo3::types::PyType;

// Bound methods are part of CPython's C API (classobject.h) but not of pyo3-ffi's.
extern "C" {
    static mut PyMethod_Type: ffi::PyTypeObject;
    fn PyMethod_Function(method: *mut ffi::PyObject) -> *mut ffi::PyObject;
    fn PyMethod_Self(method: *mut ffi::PyObject) -> *mut ffi::PyObject;
}

pub enum Callee<'py> {
    /// A Python function, or a bound method of one: its code object.
    Code(Bound<'py, PyAny>),
    /// One step of a task.
    Task(Bound<'py, PyAny>),
    /// Anything else, identified by its type or its C function.
    Other(usize),
}

/// asyncio's task classes: the C one and the pure-Python one.
static TASK_TYPES: GILOnceCell<(Py<PyType>, Py<PyType>)> = GILOnceCell::new();

fn task_types(py: Python<'_>) -> Option<&(Py<PyType>, Py<PyType>)> {
    TASK_TYPES
        .get_or_try_init(py, || -> PyResult<_> {
            let tasks = py.import("asyncio.tasks")?;
            let c_task = tasks.getattr("Task")?.downcast_into::<PyType>()?;
            let py_task = tasks.getattr("_PyTask")?.downcast_into::<PyType>()?;
            Ok((c_task.unbind(), py_task.unbind()))
        })
        .ok()
}

/// The type last found not to be a task (the owner of `future.set_result`, a protocol...):
/// the next bound method of it is told apart without walking its type's bases twice.
static LAST_NOT_TASK: GILProtected<Cell<usize>> = GILProtected::new(Cell::new(0));

fn is_task(py: Python<'_>, obj: *mut ffi::PyObject) -> bool {
    let Some((c_task, py_task)) = task_types(py) else {
        return false;
    };
    // SAFETY: `obj` is a live object (borrowed from the callback the caller holds).
    let ty = unsafe { ffi::Py_TYPE(obj) } as usize;
    let last_not_task = LAST_NOT_TASK.get(py);
    if last_not_task.get() == ty {
        return false;
    }
    // SAFETY: as above; both types are live type objects (held by TASK_TYPES), and
    // PyObject_TypeCheck only reads them.
    let task = unsafe {
        ffi::PyObject_TypeCheck(obj, c_task.as_ptr().cast()) != 0
            || ffi::PyObject_TypeCheck(obj, py_task.as_ptr().cast()) != 0
    };
    if !task {
        last_not_task.set(ty);
    }
    task
}

/// How a cached attribute is read: a struct member at an offset (what `member_get` does), or a
/// C getter (what `getset_get` does), skipping the type's attribute lookup and the descriptor's
/// own checks, which were done once when it was cached.
#[derive(Clone, Copy)]
enum Access {
    /// Byte offset of a `PyObject *` member; `None` when NULL (T_OBJECT) or missing (T_OBJECT_EX).
    Member(isize),
    /// The getter and its closure (an address).
    Getter(ffi::getter, usize),
    /// Not a descriptor read directly: a plain `getattr`.
    Lookup,
}

/// A data descriptor of a built-in type, looked up once and then read directly for objects of
/// exactly that type.
struct FastAttr {
    ty: usize,
    /// Keeps the descriptor (and so its definition) alive.
    _descr: Py<PyAny>,
    access: Access,
}

/// Cached descriptors for one attribute name, per type (a handful of types at most), with the
/// last one used in front (a copy, no borrow: what nearly every read hits).
struct AttrCache {
    name: &'static str,
    last: GILProtected<Cell<(usize, Access)>>,
    entries: GILProtected<RefCell<Vec<FastAttr>>>,
}

const ATTR_CACHE_TYPES: usize = 4;
/// `PyMemberDef.type_code`s of object members.
const T_OBJECT: i32 = 6;
const T_OBJECT_EX: i32 = 16;

impl AttrCache {
    const fn new(name: &'static str) -> Self {
        AttrCache {
            name,
            last: GILProtected::new(Cell::new((0, Access::Lookup))),
            entries: GILProtected::new(RefCell::new(Vec::new())),
        }
    }

    /// How `name` is read on objects of exactly the type `ty` (None: not learnt yet).
    fn access_for(&self, py: Python<'_>, ty: usize) -> Option<Access> {
        self.entries
            .get(py)
            .borrow()
            .iter()
            .find(|a| a.ty == ty)
            .map(|a| a.access)
    }

    /// `getattr(obj, name)`, read directly when `obj`'s type has a cached descriptor.
    fn get<'py>(&self, obj: &Bound<'py, PyAny>) -> Option<Bound<'py, PyAny>> {
        let py = obj.py();
        let ty = obj.get_type_ptr() as usize;
        let last = self.last.get(py);
        let access = match last.get() {
            (last_ty, access) if last_ty == ty => Some(access),
            _ => {
                let found = self
                    .entries
                    .get(py)
                    .borrow()
                    .iter()
                    .find(|a| a.ty == ty)
                    .map(|a| a.access);
                if let Some(access) = found {
                    last.set((ty, access));
                }
                found
            }
        };
        match access {
            Some(direct @ (Access::Member(_) | Access::Getter(..))) => read_direct(obj, direct),
            Some(Access::Lookup) => obj.getattr(self.name).ok(),
            None => {
                let value = obj.getattr(self.name).ok()?;
                self.remember(obj);
                Some(value)
            }
        }
    }

    /// Caches how to read `name` on `obj`'s type: directly if it is an object member or a C
    /// getter defined by that type (which gives what `getattr` does: data descriptors win over
    /// the instance's dict), else by lookup.
    ///
    /// A member read directly skips the `object.__getattr__` audit event some members raise
    /// (`cr_code` before 3.12): the loop reads the pointer to count busy time under it, as
    /// `PyGen_GetCode` does from 3.12 on, without handing it to any user code.
    fn remember(&self, obj: &Bound<'_, PyAny>) {
        let py = obj.py();
        let ty = obj.get_type();
        let access = ty
            .getattr(self.name)
            .ok()
            .and_then(|descr| Self::direct_access(&ty, &descr).map(|a| (a, descr)));
        let mut entries = self.entries.get(py).borrow_mut();
        if entries.len() < ATTR_CACHE_TYPES && !entries.iter().any(|a| a.ty == ty.as_ptr() as usize)
        {
            let (access, descr) =
                access.unwrap_or_else(|| (Access::Lookup, py.None().into_bound(py)));
            entries.push(FastAttr {
                ty: ty.as_ptr() as usize,
                _descr: descr.unbind(),
                access,
            });
        }
    }

    fn direct_access(ty: &Bound<'_, PyType>, descr: &Bound<'_, PyAny>) -> Option<Access> {
        let ptr = descr.as_ptr();
        // SAFETY: `descr` is live (held here); its type is checked before its struct is read
        // as that of a member or getset descriptor, CPython's own static types whose layouts
        // pyo3-ffi mirrors. The definitions they point to live as long as the descriptor.
        unsafe {
            let descr_ty = ffi::Py_TYPE(ptr);
            let is_member = descr_ty == std::ptr::addr_of_mut!(ffi::PyMemberDescr_Type);
            let is_getset = descr_ty == std::ptr::addr_of_mut!(ffi::PyGetSetDescr_Type);
            if !(is_member || is_getset) {
                return None;
            }
            let owner = (*ptr.cast::<ffi::PyDescrObject>()).d_type;
            if owner.cast::<ffi::PyObject>() != ty.as_ptr() {
                // Inherited from a base class: keep to the exact case.
                return None;
            }
            if is_member {
                let member = (*ptr.cast::<ffi::PyMemberDescrObject>())
                    .d_member
                    .cast::<ffi::PyMemberDef>();
                let (code, offset) = ((*member).type_code, (*member).offset);
                (code == T_OBJECT || code == T_OBJECT_EX).then_some(Access::Member(offset))
            } else {
                let getset = (*ptr.cast::<ffi::PyGetSetDescrObject>()).d_getset;
                (*getset)
                    .get
                    .map(|get| Access::Getter(get, (*getset).closure as usize))
            }
        }
    }
}

/// Reads an attribute through a descriptor cached for `obj`'s exact type.
#[inline]
fn read_direct<'py>(obj: &Bound<'py, PyAny>, access: Access) -> Option<Bound<'py, PyAny>> {
    let py = obj.py();
    match access {
        // The offset is that of an object member of `obj`'s exact type (checked when cached,
        // from the type's own member definition).
        // SAFETY: so it lies inside `obj` and holds NULL or a live object (new reference taken).
        Access::Member(offset) => unsafe {
            let slot = obj
                .as_ptr()
                .cast::<u8>()
                .offset(offset)
                .cast::<*mut ffi::PyObject>();
            Bound::from_borrowed_ptr_or_opt(py, *slot)
        },
        // The getter of a getset descriptor of `obj`'s exact type (checked when cached), whose
        // descriptor and closure the cache keeps alive; it returns a new reference or NULL.
        // SAFETY: called as getset_get calls it; from_owned_ptr_or_err takes either result.
        Access::Getter(get, closure) => unsafe {
            Bound::from_owned_ptr_or_err(py, get(obj.as_ptr(), closure as *mut c_void)).ok()
        },
        Access::Lookup => None,
    }
}

static TASK_OF_WRAPPER: AttrCache = AttrCache::new("__self__");
static CORO_OF_TASK: AttrCache = AttrCache::new("_coro");
static CODE_OF_CORO: AttrCache = AttrCache::new("cr_code");
static CODE_OF_GEN: AttrCache = AttrCache::new("gi_code");

/// Types met in `identify_other`, each with whether it is one of the C task's step/wake-up
/// wrappers (learnt by name, once per type: `_asyncio` does not export them).
static OTHER_TYPES: GILProtected<RefCell<Vec<(usize, bool)>>> =
    GILProtected::new(RefCell::new(Vec::new()));
/// The last of them looked up, in front.
static LAST_OTHER_TYPE: GILProtected<Cell<(usize, bool)>> =
    GILProtected::new(Cell::new((0, false)));
const OTHER_TYPES_KEPT: usize = 64;

/// Whether `obj` is exactly a bound method (`types.MethodType`).
pub fn is_bound_method(obj: &Bound<'_, PyAny>) -> bool {
    // SAFETY: compares the type of a live object (borrowed for the call) with the address of
    // PyMethod_Type, reading nothing else.
    unsafe { ffi::Py_TYPE(obj.as_ptr()) == std::ptr::addr_of_mut!(PyMethod_Type) }
}

/// Identifies `callback`, a live object the caller holds.
pub fn identify<'py>(callback: &Bound<'py, PyAny>) -> Callee<'py> {
    let py = callback.py();
    let ptr = callback.as_ptr();
    // `ptr` is live for the whole call (the caller holds `callback`); every pointer read below
    // is borrowed from it and made an owned Bound before `callback` could be released.
    // SAFETY: PyFunction_GetCode and PyMethod_* are only called on objects of checked type.
    unsafe {
        if ffi::PyFunction_Check(ptr) != 0 {
            return Callee::Code(Bound::from_borrowed_ptr(py, ffi::PyFunction_GetCode(ptr)));
        }
        let ty = ffi::Py_TYPE(ptr);
        if ty == std::ptr::addr_of_mut!(PyMethod_Type) {
            let owner = PyMethod_Self(ptr);
            if is_task(py, owner) {
                return Callee::Task(Bound::from_borrowed_ptr(py, owner));
            }
            let func = PyMethod_Function(ptr);
            if ffi::PyFunction_Check(func) != 0 {
                return Callee::Code(Bound::from_borrowed_ptr(py, ffi::PyFunction_GetCode(func)));
            }
            return Callee::Other(ffi::Py_TYPE(func) as usize);
        }
        if ffi::PyCFunction_Check(ptr) != 0 {
            let owner = ffi::PyCFunction_GetSelf(ptr);
            if !owner.is_null() && is_task(py, owner) {
                return Callee::Task(Bound::from_borrowed_ptr(py, owner));
            }
            let function: Option<ffi::PyCFunction> = ffi::PyCFunction_GetFunction(ptr);
            return Callee::Other(function.map_or(ty as usize, |f| f as *const c_void as usize));
        }
    }
    identify_other(callback)
}

/// Callables of other types: the C task's step/wake-up wrappers (whose `__self__` is the task)
/// or anything else, known by its type.
fn identify_other<'py>(callback: &Bound<'py, PyAny>) -> Callee<'py> {
    let py = callback.py();
    let ty_id = callback.get_type_ptr() as usize;
    let last = LAST_OTHER_TYPE.get(py);
    let known = match last.get() {
        (id, wrapper) if id == ty_id => Some(wrapper),
        _ => OTHER_TYPES
            .get(py)
            .borrow()
            .iter()
            .find(|(id, _)| *id == ty_id)
            .map(|&(_, wrapper)| wrapper),
    };
    let is_wrapper = known.unwrap_or_else(|| {
        let wrapper = callback.get_type().name().is_ok_and(|n| {
            n.to_str()
                .is_ok_and(|n| n.starts_with("Task") && n.ends_with("MethWrapper"))
        });
        let mut types = OTHER_TYPES.get(py).borrow_mut();
        // Bounded: heap types come and go; past this many, unknown types are re-checked.
        if types.len() < OTHER_TYPES_KEPT {
            types.push((ty_id, wrapper));
        }
        wrapper
    });
    last.set((ty_id, is_wrapper));
    if is_wrapper {
        if let Some(task) = TASK_OF_WRAPPER.get(callback) {
            if is_task(py, task.as_ptr()) {
                return Callee::Task(task);
            }
        }
    }
    Callee::Other(ty_id)
}

/// How this interpreter's C tasks are laid out, learnt from the first task step identified
/// the slow way: the step wrapper's type and how to read its task, the task type and how to
/// read its coroutine, the coroutine type and how to read its code. Task steps of exactly
/// these types then take a handful of pointer reads (`TaskShape::key`).
struct TaskShape {
    wrapper_ty: usize,
    wrapper_task: Access,
    task_ty: usize,
    task_coro: Access,
    coro_ty: usize,
    coro_code: Access,
    /// Keeps the types (heap types from 3.12 on) alive while their addresses are compared.
    _types: [Py<PyAny>; 3],
}

static TASK_SHAPE: GILOnceCell<TaskShape> = GILOnceCell::new();

impl TaskShape {
    /// Learns the shape from a task step identified the slow way (callback, task, coroutine).
    fn learn(callback: &Bound<'_, PyAny>, task: &Bound<'_, PyAny>) {
        let py = callback.py();
        if TASK_SHAPE.get(py).is_some() {
            return;
        }
        let Some(coro) = CORO_OF_TASK.get(task) else {
            return;
        };
        let ty = |o: &Bound<'_, PyAny>| o.get_type_ptr() as usize;
        let accesses = (
            TASK_OF_WRAPPER.access_for(py, ty(callback)),
            CORO_OF_TASK.access_for(py, ty(task)),
            if cfg!(Py_3_12) {
                Some(Access::Lookup)
            } else {
                CODE_OF_CORO.access_for(py, ty(&coro))
            },
        );
        let (Some(wrapper_task), Some(task_coro), Some(coro_code)) = accesses else {
            return;
        };
        if matches!(wrapper_task, Access::Lookup) || matches!(task_coro, Access::Lookup) {
            return;
        }
        // SAFETY: PyCoro_CheckExact only reads the type of a live object.
        if unsafe { ffi::PyCoro_CheckExact(coro.as_ptr()) } == 0 {
            return;
        }
        let _ = TASK_SHAPE.set(
            py,
            TaskShape {
                wrapper_ty: ty(callback),
                wrapper_task,
                task_ty: ty(task),
                task_coro,
                coro_ty: ty(&coro),
                coro_code,
                _types: [
                    callback.get_type().into_any().unbind(),
                    task.get_type().into_any().unbind(),
                    coro.get_type().into_any().unbind(),
                ],
            },
        );
    }

    /// The key of a task step whose wrapper is exactly the learnt type (None otherwise, or
    /// when anything along the way is not of the learnt types).
    #[inline]
    fn key<'py>(&self, callback: &Bound<'py, PyAny>) -> Option<Key<'py>> {
        if callback.get_type_ptr() as usize != self.wrapper_ty {
            return None;
        }
        let task = read_direct(callback, self.wrapper_task)?;
        Some(self.key_of_task(task))
    }

    /// The key of a step of `task`, read the fast way when it is of the learnt types.
    #[inline]
    fn key_of_task<'py>(&self, task: Bound<'py, PyAny>) -> Key<'py> {
        let code = if task.get_type_ptr() as usize == self.task_ty {
            read_direct(&task, self.task_coro).and_then(|coro| {
                if coro.get_type_ptr() as usize == self.coro_ty {
                    coro_code_fast(&coro, self.coro_code)
                } else {
                    coroutine_code_of(&coro)
                }
            })
        } else {
            coroutine_code(&task)
        };
        Key::for_task(task, code)
    }
}

/// The code of a coroutine of exactly the learnt coroutine type.
#[inline]
fn coro_code_fast<'py>(coro: &Bound<'py, PyAny>, access: Access) -> Option<Bound<'py, PyAny>> {
    #[cfg(Py_3_12)]
    {
        let _ = access;
        // SAFETY: `coro` is a live coroutine (its exact type was checked by the caller); a
        // coroutine is laid out as a generator, which PyGen_GetCode reads (without the audit
        // event `cr_code` raises), returning a new reference.
        unsafe { Bound::from_owned_ptr_or_opt(coro.py(), PyGen_GetCode(coro.as_ptr())) }
    }
    #[cfg(not(Py_3_12))]
    read_direct(coro, access)
}

/// What a dispatch's busy time is counted under (`id`), with what names it: the code object
/// that ran (for a task step, its coroutine's), and the task of a task step.
pub struct Key<'py> {
    pub id: usize,
    pub code: Option<Bound<'py, PyAny>>,
    pub task: Option<Bound<'py, PyAny>>,
}

impl<'py> Key<'py> {
    /// Counted under nothing (aggregates off).
    pub const NONE: Key<'static> = Key {
        id: 0,
        code: None,
        task: None,
    };

    fn for_task(task: Bound<'py, PyAny>, code: Option<Bound<'py, PyAny>>) -> Key<'py> {
        let id = code
            .as_ref()
            .map_or(task.get_type_ptr() as usize, |c| c.as_ptr() as usize);
        Key {
            id,
            code,
            task: Some(task),
        }
    }

    #[inline]
    pub fn of(callback: &Bound<'py, PyAny>) -> Key<'py> {
        let py = callback.py();
        let shape = TASK_SHAPE.get(py);
        if let Some(key) = shape.and_then(|s| s.key(callback)) {
            return key;
        }
        match identify(callback) {
            Callee::Code(code) => Key {
                id: code.as_ptr() as usize,
                code: Some(code),
                task: None,
            },
            Callee::Task(task) => match shape {
                Some(shape) => shape.key_of_task(task),
                None => {
                    TaskShape::learn(callback, &task);
                    let code = coroutine_code(&task);
                    Key::for_task(task, code)
                }
            },
            Callee::Other(id) => Key {
                id,
                code: None,
                task: None,
            },
        }
    }
}

#[cfg(Py_3_12)]
extern "C" {
    fn PyGen_GetCode(gen: *mut ffi::PyObject) -> *mut ffi::PyObject;
}

/// The code object of a task's coroutine (None for other awaitables).
fn coroutine_code<'py>(task: &Bound<'py, PyAny>) -> Option<Bound<'py, PyAny>> {
    coroutine_code_of(&CORO_OF_TASK.get(task)?)
}

/// The code object of a coroutine or generator (None for other awaitables).
fn coroutine_code_of<'py>(coro: &Bound<'py, PyAny>) -> Option<Bound<'py, PyAny>> {
    if coro.is_none() {
        return None;
    }
    let py = coro.py();
    #[cfg(Py_3_12)]
    // SAFETY: `coro` is a live coroutine (its exact type checked just before); a coroutine
    // is laid out as a generator, which PyGen_GetCode reads (without the audit event that
    // `cr_code` raises), returning a new reference.
    unsafe {
        if ffi::PyCoro_CheckExact(coro.as_ptr()) != 0 || ffi::PyGen_CheckExact(coro.as_ptr()) != 0 {
            return Bound::from_owned_ptr_or_opt(py, PyGen_GetCode(coro.as_ptr()));
        }
    }
    CODE_OF_CORO
        .get(coro)
        .or_else(|| {
            // Not a coroutine: a generator-based one, or another awaitable.
            if coro.hasattr(intern!(py, "gi_code")).unwrap_or(false) {
                CODE_OF_GEN.get(coro)
            } else {
                None
            }
        })
        .filter(|code| !code.is_none())
}
