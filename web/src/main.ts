// The app shell: sign in, the project list, and a project with its three views, who is online,
// the connection state and the last server error. Routes live in the URL hash
// (#/, #/p/{id}/gantt, #/p/{id}/board, #/p/{id}/whiteboards[/{board}]).

import './style.css';
import { Api, ApiError, type User } from './client';
import { BoardView } from './app/board';
import { clear, h } from './app/dom';
import { GanttView } from './app/gantt';
import { ProjectState } from './app/project';
import { WhiteboardView } from './app/whiteboard';

const api = new Api({ storage: sessionStorage });
const root = document.getElementById('app')!;
const errorBox = h('div', { testid: 'error-message', class: 'error', role: 'alert' });
errorBox.hidden = true;
errorBox.addEventListener('click', () => (errorBox.hidden = true));

function showError(message: string): void {
  errorBox.textContent = message;
  errorBox.hidden = false;
}

let me: User | null = null;
api.onSignedOut = () => {
  me = null;
  closeProject();
  renderLogin();
};
let open: { project: ProjectState; view: { root: HTMLElement; destroy(): void } | null; viewKey: string } | null = null;

function closeProject(): void {
  open?.view?.destroy();
  open?.project.close();
  open = null;
}

async function route(): Promise<void> {
  if (!api.signedIn) {
    closeProject();
    renderLogin();
    return;
  }
  try {
    me ??= await api.get<User>('/api/v1/users/me');
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      api.forget();
      renderLogin();
      return;
    }
    showError(err instanceof ApiError ? err.message : String(err));
    return;
  }
  const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean);
  if (parts[0] === 'p' && parts[1]) {
    await renderProject(parts[1], parts[2] ?? 'gantt', parts[3] ?? null);
  } else {
    closeProject();
    await renderProjects();
  }
}

function shell(...content: Node[]): void {
  clear(root);
  const signOut = h('button', { type: 'button', class: 'link', testid: 'logout' }, 'Sign out');
  signOut.addEventListener('click', () => {
    closeProject();
    void api.logout().finally(() => {
      me = null;
      location.hash = '#/';
      void route();
    });
  });
  root.append(
    h(
      'header',
      { class: 'top' },
      h('a', { href: '#/', class: 'brand' }, 'liveplan'),
      h('span', { class: 'spacer' }),
      me ? h('span', { class: 'me' }, me.display_name ?? me.username ?? me.email) : null,
      me ? signOut : null,
    ),
    errorBox,
    ...content,
  );
}

function renderLogin(): void {
  const username = h('input', { testid: 'login-username', name: 'username', autocomplete: 'username', required: true });
  const password = h('input', { testid: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const submit = h('button', { testid: 'login-submit', type: 'submit' }, 'Sign in');
  const error = h('p', { testid: 'login-error', class: 'error', role: 'alert' });
  error.hidden = true;
  const form = h(
    'form',
    { class: 'login' },
    h('h1', {}, 'Sign in to liveplan'),
    h('label', {}, 'Username or email', username),
    h('label', {}, 'Password', password),
    submit,
    error,
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    submit.disabled = true;
    error.hidden = true;
    api
      .login(username.value.trim(), password.value)
      .then((answer) => {
        me = answer.user;
        errorBox.hidden = true;
        void route();
      })
      .catch((err) => {
        error.textContent = err instanceof ApiError ? err.message : String(err);
        error.hidden = false;
      })
      .finally(() => (submit.disabled = false));
  });
  clear(root);
  root.append(form);
  username.focus();
}

async function renderProjects(): Promise<void> {
  const list = h('ul', { testid: 'project-list', class: 'projects' });
  shell(h('main', { class: 'page' }, h('h1', {}, 'Projects'), list));
  try {
    const projects = await api.get<Array<{ id: string; name: string; key?: string }>>('/api/v1/projects');
    for (const p of projects) {
      list.append(
        h('li', {}, h('a', { testid: 'project-link', 'data-project-id': p.id, href: `#/p/${p.id}/gantt` }, p.name, p.key ? h('small', {}, ` ${p.key}`) : null)),
      );
    }
    if (projects.length === 0) list.append(h('li', { class: 'empty' }, 'No projects yet.'));
  } catch (err) {
    showError(err instanceof ApiError ? err.message : String(err));
  }
}

function initials(name: string): string {
  return name
    .split(/\s+/)
    .filter(Boolean)
    .slice(0, 2)
    .map((w) => w[0]!.toUpperCase())
    .join('');
}

async function renderProject(id: string, viewName: string, boardId: string | null): Promise<void> {
  if (!open || open.project.id !== id) {
    closeProject();
    const project = new ProjectState(api, id, me!.id, showError);
    open = { project, view: null, viewKey: '' };
    const title = h('h1', { class: 'project-title' });
    const status = h('span', { testid: 'connection-status', class: 'status' }, 'reconnecting');
    const avatars = h('div', { class: 'avatars' });
    const role = h('span', { class: 'role' });
    const tabs = h(
      'nav',
      { class: 'tabs' },
      h('a', { testid: 'view-gantt', href: `#/p/${id}/gantt`, 'data-view': 'gantt' }, 'Gantt'),
      h('a', { testid: 'view-board', href: `#/p/${id}/board`, 'data-view': 'board' }, 'Board'),
      h('a', { testid: 'view-whiteboards', href: `#/p/${id}/whiteboards`, 'data-view': 'whiteboards' }, 'Whiteboards'),
    );
    const content = h('div', { class: 'view' });
    shell(h('main', { class: 'project' }, h('div', { class: 'project-bar' }, title, role, tabs, h('span', { class: 'spacer' }), avatars, status), content));
    const paint = () => {
      title.textContent = project.info?.name ?? '…';
      status.textContent = project.connection;
      status.dataset.state = project.connection;
      role.textContent = project.canEdit ? '' : 'read only';
      clear(avatars);
      for (const p of [...project.presence.values()].sort((a, b) => a.display_name.localeCompare(b.display_name))) {
        const a = h('span', { testid: 'presence-avatar', class: 'avatar', 'data-user-id': p.user_id, title: p.display_name }, initials(p.display_name || '?'));
        if (p.user_id === me?.id) a.classList.add('self');
        avatars.append(a);
      }
    };
    project.subscribe(paint);
    try {
      await project.open();
    } catch (err) {
      showError(err instanceof ApiError ? err.message : String(err));
      return;
    }
    paint();
  }
  const state = open;
  if (!state) return;
  const key = `${viewName}/${boardId ?? ''}`;
  if (state.viewKey === key && state.view) return;
  state.view?.destroy();
  state.viewKey = key;
  const content = root.querySelector('.view')!;
  for (const a of root.querySelectorAll<HTMLElement>('.tabs a')) a.classList.toggle('active', a.dataset.view === viewName);
  clear(content);
  const project = state.project;
  if (viewName === 'board') {
    state.view = new BoardView(project);
  } else if (viewName === 'whiteboards') {
    state.view = boardId
      ? new WhiteboardView(project, boardId, { id: me!.id, name: me!.display_name ?? me!.username ?? me!.email })
      : whiteboardList(project);
  } else {
    state.view = new GanttView(project);
  }
  content.append(state.view.root);
}

function whiteboardList(project: ProjectState): { root: HTMLElement; destroy(): void } {
  const list = h('ul', { class: 'whiteboards' });
  const name = h('input', { testid: 'new-whiteboard-name', placeholder: 'New whiteboard name', maxlength: 200 });
  const submit = h('button', { type: 'submit', testid: 'new-whiteboard-submit' }, 'Create');
  const form = h('form', { class: 'new-task' }, name, submit);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (!name.value.trim()) return;
    project
      .createWhiteboard(name.value.trim())
      .then((b) => (location.hash = `#/p/${project.id}/whiteboards/${b.id}`))
      .catch((err) => project.report(err));
  });
  const paint = () => {
    name.disabled = submit.disabled = !project.canEdit;
    clear(list);
    for (const b of [...project.whiteboards.values()].sort((x, y) => (x.id < y.id ? -1 : 1))) {
      list.append(h('li', {}, h('a', { testid: 'whiteboard-link', 'data-whiteboard-id': b.id, href: `#/p/${project.id}/whiteboards/${b.id}` }, b.name)));
    }
    if (project.whiteboards.size === 0) list.append(h('li', { class: 'empty' }, 'No whiteboards yet.'));
  };
  const unsubscribe = project.subscribe(paint);
  paint();
  return { root: h('section', { class: 'page' }, form, list), destroy: unsubscribe };
}

window.addEventListener('hashchange', () => void route());
void route();
