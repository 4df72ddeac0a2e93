#!/usr/bin/python3
"""slixmpp_cycle.py - a real third-party client (slixmpp's XEP-0060 plugin)
drives pubsubd through the full publish-subscribe cycle.

Run by tests/integration/check_slixmpp.sh, which starts pubsubd as the
component SERVICE_JID (argv[1]) on a fresh database.  Reads the test
environment from PST_* variables (tests/integration/env.sh).

Two clients, owner@ and alice@, both slixmpp.ClientXMPP with plugins
xep_0030, xep_0004, xep_0059 and xep_0060, and the slixmpp API as a client
application would call it:

  1. disco#info of the service lists the pubsub features used below;
  2. owner: create_node() with a node_config form -> get_node_config()
     returns the values;
  3. alice: subscribe() with a subscribe_options form -> 'subscribed';
     get_subscription_options() returns include_body true;
  4. owner: publish() 25 items with a publish-options form (precondition
     pubsub#max_items=100); alice gets every pubsub_publish event once, in
     order, with its payload and a <body/>; a publish whose precondition does
     not match (pubsub#max_items=5) fails with conflict/precondition-not-met
     and changes nothing;
  5. alice: get_items(max_items=5) returns the 5 most recent items;
     get_items(iterator=True) (XEP-0059 ResultIterator, pages of 10) and a
     hand-built <set/> both page through the 25 items: each exactly once, in
     publish order, with <count>25</count>;
  6. owner: purge() -> alice gets a purge event; get_items() returns none;
  7. owner: delete_node() -> alice gets a delete event; get_items() fails
     with item-not-found.

The one accommodation for slixmpp 1.8.3 itself: its Pubsub stanza has no
XEP-0059 <set/> plugin registered, so get_items(iterator=True) could not add
one; the test registers it (register_stanza_plugin(Pubsub, Set)), as any
slixmpp application paging pubsub items must.  Nothing is special-cased for
pubsubd.

Exit status 0 on success, 1 on any failure (with a message naming the step
and the last stanzas exchanged).  Never 77: a missing PST_ variable fails.
Everything is bounded: TOTAL_TIMEOUT for the whole run, IQ_TIMEOUT per IQ,
EVENT_TIMEOUT per awaited notification.
"""
import asyncio
import collections
import logging
import os
import sys
import time

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.plugins.xep_0059 import Set
from slixmpp.plugins.xep_0060.stanza.pubsub import Pubsub
from slixmpp.xmlstream import ET, register_stanza_plugin

TOTAL_TIMEOUT = 30.0
CONNECT_TIMEOUT = 10.0
IQ_TIMEOUT = 10
EVENT_TIMEOUT = 10.0

NS_PUBSUB = 'http://jabber.org/protocol/pubsub'
NS_PUBSUB_ERRORS = NS_PUBSUB + '#errors'
NS_PUBSUB_EVENT = NS_PUBSUB + '#event'
NS_RSM = 'http://jabber.org/protocol/rsm'
NS_PAYLOAD = 'urn:example:pubsubd:slixmpp'
NS_STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas'

N_ITEMS = 25
PAGE = 10

# The disco#info features of the service this cycle relies on (XEP-0060
# §10 and §6.5.4 for pubsub#rsm).
REQUIRED_FEATURES = [
    NS_PUBSUB,
    NS_PUBSUB + '#create-nodes',
    NS_PUBSUB + '#create-and-configure',
    NS_PUBSUB + '#config-node',
    NS_PUBSUB + '#subscribe',
    NS_PUBSUB + '#subscription-options',
    NS_PUBSUB + '#publish',
    NS_PUBSUB + '#publish-options',
    NS_PUBSUB + '#persistent-items',
    NS_PUBSUB + '#retrieve-items',
    NS_PUBSUB + '#rsm',
    NS_PUBSUB + '#purge-nodes',
    NS_PUBSUB + '#delete-nodes',
    NS_PUBSUB + '#item-ids',
]


class Failure(Exception):
    pass


STEP = ['setup']


def step(name):
    STEP[0] = name
    print('slixmpp_cycle: step %s' % name, flush=True)


def fail(msg):
    raise Failure(msg)


def check(cond, msg):
    if not cond:
        fail(msg)


# ---- the last stanzas exchanged, for failure reports -----------------------

TRAIL = collections.deque(maxlen=40)


def setup_logging():
    verbose = os.environ.get('SLIX_VERBOSE') == '1'
    logging.basicConfig(level=logging.DEBUG if verbose else logging.ERROR,
                        stream=sys.stderr,
                        format='%(asctime)s %(levelname)s %(name)s %(message)s')


# ---- environment -------------------------------------------------------------

def env(name):
    v = os.environ.get(name)
    if not v:
        print('slixmpp_cycle: FAIL: environment variable %s is not set '
              '(start the test environment: tests/integration/env.sh start; '
              '. $PST_DIR/env)' % name, file=sys.stderr)
        sys.exit(1)
    return v


# ---- client ------------------------------------------------------------------

class Client(slixmpp.ClientXMPP):
    def __init__(self, name, jid, password):
        super().__init__(jid, password)
        self.name = name
        for p in ('xep_0030', 'xep_0004', 'xep_0059', 'xep_0060'):
            self.register_plugin(p)
        self.ready = asyncio.get_event_loop().create_future()
        self.events = asyncio.Queue()
        self.watched = None
        self.add_filter('in', self._trail('RECV'))
        self.add_filter('out', self._trail('SEND'))
        self.add_event_handler('session_start', self._session_start)
        self.add_event_handler('failed_auth', self._failed_auth)
        self.add_event_handler('disconnected', self._disconnected)
        for ev in ('pubsub_publish', 'pubsub_retract', 'pubsub_purge',
                   'pubsub_delete', 'pubsub_config', 'pubsub_subscription'):
            self.add_event_handler(ev, self._make_queue_handler(ev))

    def _trail(self, direction):
        def f(stanza):
            TRAIL.append('%s %s: %s' % (self.name, direction, str(stanza)[:3000]))
            return stanza
        return f

    def _make_queue_handler(self, ev):
        def handler(msg):
            self.events.put_nowait((ev, msg))
        return handler

    async def _session_start(self, _event):
        # Available presence: Prosody routes a message to a bare JID only to
        # resources that sent presence (priority >= 0).
        self.send_presence()
        if not self.ready.done():
            self.ready.set_result(True)

    def _failed_auth(self, _event):
        if not self.ready.done():
            self.ready.set_exception(Failure('%s: SASL authentication failed' % self.boundjid))

    def _disconnected(self, _event):
        if not self.ready.done():
            self.ready.set_exception(Failure('%s: disconnected before the session started'
                                             % self.boundjid))

    def watch(self, service, node):
        """Only notifications from service about node count (another test
        may notify the same bare JID at the same time)."""
        self.watched = (service, node)

    def _ours(self, msg):
        ev = msg.xml.find('{%s}event' % NS_PUBSUB_EVENT)
        node = None
        if ev is not None and len(ev):
            node = ev[0].get('node')
        return (msg['from'].bare, node) == self.watched

    async def _next(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise asyncio.TimeoutError()
            ev, msg = await asyncio.wait_for(self.events.get(), left)
            if self._ours(msg):
                return ev, msg

    async def next_event(self, what):
        try:
            return await self._next(EVENT_TIMEOUT)
        except asyncio.TimeoutError:
            fail('%s: no %s within %.0f s' % (self.name, what, EVENT_TIMEOUT))

    async def no_event(self, secs, what):
        try:
            ev, msg = await self._next(secs)
        except asyncio.TimeoutError:
            return
        fail('%s: unexpected %s (%s) while expecting %s: %s' % (self.name, ev, msg['id'], what, msg))


async def iq(what, coro):
    """Awaits an IQ sent by a slixmpp call; fails with the error stanza."""
    try:
        return await coro
    except IqError as e:
        fail('%s: error reply: %s' % (what, e.iq))
    except IqTimeout:
        fail('%s: no reply within %d s' % (what, IQ_TIMEOUT))


async def iq_error(what, coro):
    """Awaits an IQ that must fail; returns the error reply."""
    try:
        r = await coro
    except IqError as e:
        return e.iq
    except IqTimeout:
        fail('%s: no reply within %d s' % (what, IQ_TIMEOUT))
    fail('%s: expected an error, got a result: %s' % (what, r))


def error_conditions(err_iq):
    """(type, defined condition, pubsub#errors condition or None)."""
    e = err_iq.xml.find('{jabber:client}error')
    check(e is not None, 'error reply without <error/>: %s' % err_iq)
    cond = app = None
    for c in e:
        if c.tag.startswith('{%s}' % NS_STANZAS) and not c.tag.endswith('}text'):
            cond = c.tag.split('}', 1)[1]
        elif c.tag.startswith('{%s}' % NS_PUBSUB_ERRORS):
            app = c.tag.split('}', 1)[1]
    return e.get('type'), cond, app


def truthy(v):
    if isinstance(v, bool):
        return v
    return str(v).strip().lower() in ('1', 'true')


def payload_of(i):
    entry = ET.Element('{%s}entry' % NS_PAYLOAD)
    title = ET.SubElement(entry, '{%s}title' % NS_PAYLOAD)
    title.text = 'entry %d <&> "slixmpp"' % i
    n = ET.SubElement(entry, '{%s}n' % NS_PAYLOAD)
    n.text = str(i)
    return entry


def check_payload(where, payload, i):
    check(payload is not None, '%s: item %d has no payload' % (where, i))
    check(payload.tag == '{%s}entry' % NS_PAYLOAD,
          '%s: item %d payload is %s, expected {%s}entry' % (where, i, payload.tag, NS_PAYLOAD))
    n = payload.find('{%s}n' % NS_PAYLOAD)
    t = payload.find('{%s}title' % NS_PAYLOAD)
    check(n is not None and n.text == str(i) and t is not None
          and t.text == 'entry %d <&> "slixmpp"' % i,
          '%s: item %d payload differs from the published one: %s'
          % (where, i, ET.tostring(payload, encoding='unicode')))


def item_id(i):
    return 'item-%02d' % i


def make_form(xmpp, form_type, fields):
    form = xmpp['xep_0004'].make_form(ftype='submit')
    if form_type:
        form.add_field(var='FORM_TYPE', ftype='hidden', value=form_type)
    for var, value in fields:
        form.add_field(var=var, value=value)
    return form


def items_of(result):
    """[(id, payload)] of an items result."""
    return [(it['id'], it['payload']) for it in result['pubsub']['items']]


# ---- the cycle -----------------------------------------------------------------

async def connect(c, host, port):
    c.connect(address=(host, port), use_ssl=False, force_starttls=False,
              disable_starttls=True)
    try:
        await asyncio.wait_for(c.ready, CONNECT_TIMEOUT)
    except asyncio.TimeoutError:
        fail('%s: no session within %.0f s (c2s 127.0.0.1:%d)' % (c.boundjid, CONNECT_TIMEOUT, port))


async def cycle(service):
    host = env('PST_XMPP_HOST')
    port = int(env('PST_C2S_PORT'))
    domain = env('PST_DOMAIN')
    password = env('PST_PASSWORD')
    # The other variables of the environment: fail, naming them, if absent.
    for v in ('PST_DIR', 'PST_COMPONENT_PORT', 'PST_COMPONENT_SECRET', 'PST_PG_CONNINFO'):
        env(v)

    register_stanza_plugin(Pubsub, Set)  # see the module docstring

    resource = 'slixmpp-%d' % os.getpid()
    owner = Client('owner', 'owner@%s/%s' % (domain, resource), password)
    alice = Client('alice', 'alice@%s/%s' % (domain, resource), password)
    alice_bare = 'alice@%s' % domain
    clients = [owner, alice]
    try:
        step('connect')
        await asyncio.gather(connect(owner, host, port), connect(alice, host, port))

        # 1. disco#info ---------------------------------------------------
        step('1 disco#info')
        info = await iq('disco#info of %s' % service,
                        owner['xep_0030'].get_info(jid=service, local=False, timeout=IQ_TIMEOUT))
        features = set(info['disco_info']['features'])
        missing = [f for f in REQUIRED_FEATURES if f not in features]
        check(not missing, 'disco#info of %s lacks %s (has %s)'
              % (service, ', '.join(missing), ' '.join(sorted(features))))
        identities = info['disco_info']['identities']
        check(any(i[0] == 'pubsub' and i[1] == 'service' for i in identities),
              'disco#info of %s has no pubsub/service identity: %s' % (service, identities))

        # 2. create with configuration --------------------------------------
        step('2 create_node with config')
        node = 'slix-%d-%d' % (os.getpid(), int(time.time() * 1000))
        title = 'slixmpp cycle <%s>' % node
        alice.watch(service, node)
        config = make_form(owner, None, [('pubsub#title', title),
                                         ('pubsub#max_items', '100'),
                                         ('pubsub#notify_retract', '1')])
        r = await iq('create_node %s' % node,
                     owner['xep_0060'].create_node(service, node, config=config, timeout=IQ_TIMEOUT))
        created = r['pubsub']['create']['node']
        check(created in ('', node), 'create_node %s: the service named the node %r' % (node, created))
        r = await iq('get_node_config %s' % node,
                     owner['xep_0060'].get_node_config(service, node, timeout=IQ_TIMEOUT))
        form = r['pubsub_owner']['configure']['form']
        values = form.get_values()
        check(values.get('FORM_TYPE') in (NS_PUBSUB + '#node_config', [NS_PUBSUB + '#node_config']),
              'get_node_config: FORM_TYPE is %r' % values.get('FORM_TYPE'))
        check(values.get('pubsub#title') == title,
              'get_node_config: pubsub#title is %r, expected %r' % (values.get('pubsub#title'), title))
        check(str(values.get('pubsub#max_items')) == '100',
              'get_node_config: pubsub#max_items is %r, expected 100' % values.get('pubsub#max_items'))
        check(truthy(values.get('pubsub#notify_retract')),
              'get_node_config: pubsub#notify_retract is %r, expected true'
              % values.get('pubsub#notify_retract'))

        # 3. subscribe with options -------------------------------------------
        step('3 subscribe with options')
        opts = make_form(alice, NS_PUBSUB + '#subscribe_options',
                         [('pubsub#deliver', '1'), ('pubsub#include_body', '1')])
        r = await iq('alice subscribe %s' % node,
                     alice['xep_0060'].subscribe(service, node, options=opts, timeout=IQ_TIMEOUT))
        sub = r['pubsub']['subscription']
        check(sub['subscription'] == 'subscribed',
              'subscribe: subscription is %r, expected subscribed: %s' % (sub['subscription'], r))
        check(sub['node'] == node, 'subscribe: subscription node is %r: %s' % (sub['node'], r))
        check(sub['jid'].bare == alice_bare, 'subscribe: subscription jid is %r: %s' % (str(sub['jid']), r))
        # §6.3.7: the result SHOULD carry the resulting options; if it does,
        # they must be the ones asked for.
        ropts = r.xml.find('{%s}pubsub/{%s}options/{jabber:x:data}x' % (NS_PUBSUB, NS_PUBSUB))
        if ropts is not None:
            rvalues = r['pubsub']['options']['options'].get_values()
            check(truthy(rvalues.get('pubsub#include_body')) and truthy(rvalues.get('pubsub#deliver', True)),
                  'subscribe result: options %s, expected deliver and include_body true: %s'
                  % (rvalues, r))
        r = await iq('get_subscription_options',
                     alice['xep_0060'].get_subscription_options(service, node, user_jid=alice_bare,
                                                                timeout=IQ_TIMEOUT))
        check(r['pubsub']['options'].xml.find('{jabber:x:data}x') is not None,
              'get_subscription_options: no data form: %s' % r)
        ovalues = r['pubsub']['options']['options'].get_values()
        check(truthy(ovalues.get('pubsub#include_body')),
              'get_subscription_options: pubsub#include_body is %r, expected true: %s'
              % (ovalues.get('pubsub#include_body'), r))
        check(truthy(ovalues.get('pubsub#deliver', True)),
              'get_subscription_options: pubsub#deliver is %r, expected true'
              % ovalues.get('pubsub#deliver'))
        # Nothing was published: no notification may have arrived.
        await alice.no_event(0.2, 'nothing before the first publish')

        # 4. publish with publish-options ---------------------------------------
        step('4 publish with publish-options')
        for i in range(N_ITEMS):
            popts = make_form(owner, NS_PUBSUB + '#publish-options', [('pubsub#max_items', '100')])
            r = await iq('publish %s' % item_id(i),
                         owner['xep_0060'].publish(service, node, id=item_id(i), payload=payload_of(i),
                                                   options=popts, timeout=IQ_TIMEOUT))
            got = r['pubsub']['publish']['item']['id']
            check(got in ('', item_id(i)),
                  'publish %s: result names item %r' % (item_id(i), got))
        seen = set()
        n = 0
        while n < N_ITEMS:
            ev, msg = await alice.next_event('notification of %s' % item_id(n))
            check(ev == 'pubsub_publish', 'alice: expected pubsub_publish of %s, got %s: %s'
                  % (item_id(n), ev, msg))
            if msg['id'] and msg['id'] in seen:
                continue  # at-least-once: a duplicate carries the same id
            seen.add(msg['id'])
            check(msg['from'].bare == service, 'notification from %s, expected %s' % (msg['from'], service))
            items = msg['pubsub_event']['items']
            check(items['node'] == node, 'notification for node %r, expected %r: %s'
                  % (items['node'], node, msg))
            evitems = [it for it in items]
            check(len(evitems) == 1, 'notification with %d items, expected 1: %s' % (len(evitems), msg))
            check(evitems[0]['id'] == item_id(n), 'notification %d is of item %r, expected %r (order)'
                  % (n, evitems[0]['id'], item_id(n)))
            check_payload('notification', evitems[0]['payload'], n)
            check(msg.xml.find('{jabber:client}body') is not None and msg['body'].strip() != '',
                  'notification of %s has no <body/> although include_body is true: %s'
                  % (item_id(n), msg))
            n += 1
        # Precondition not met: conflict + precondition-not-met, nothing stored.
        bad = make_form(owner, NS_PUBSUB + '#publish-options', [('pubsub#max_items', '5')])
        e = await iq_error('publish with precondition pubsub#max_items=5',
                           owner['xep_0060'].publish(service, node, id='item-bad', payload=payload_of(99),
                                                     options=bad, timeout=IQ_TIMEOUT))
        etype, cond, app = error_conditions(e)
        check((etype, cond, app) == ('cancel', 'conflict', 'precondition-not-met'),
              'publish with a mismatching precondition: error %s/%s/%s, expected '
              'cancel/conflict/precondition-not-met: %s' % (etype, cond, app, e))
        await alice.no_event(0.3, 'no notification of a refused publish')

        # 5. retrieval, RSM paging ---------------------------------------------------
        step('5 get_items max_items and RSM paging')
        r = await iq('get_items max_items=5',
                     alice['xep_0060'].get_items(service, node, max_items=5, timeout=IQ_TIMEOUT))
        got = items_of(r)
        check(sorted(i for i, _ in got) == [item_id(i) for i in range(N_ITEMS - 5, N_ITEMS)],
              'get_items max_items=5: got %s, expected the 5 most recent items %s..%s'
              % ([i for i, _ in got], item_id(N_ITEMS - 5), item_id(N_ITEMS - 1)))
        for iid, payload in got:
            check_payload('get_items max_items=5', payload, int(iid[5:]))
        check(all(iid != 'item-bad' for iid, _ in got), 'the refused publish stored item-bad')

        # 5a. slixmpp's own XEP-0059 iterator (pages of 10).
        pages = []
        order = []
        it = alice['xep_0060'].get_items(service, node, iterator=True)
        check(it.amount == PAGE, 'slixmpp iterator page size is %d, expected %d' % (it.amount, PAGE))
        it.iq_options = {'timeout': IQ_TIMEOUT}
        async for page in it:
            ids = [iid for iid, _ in items_of(page)]
            pages.append(ids)
            order.extend(ids)
            for iid, payload in items_of(page):
                check_payload('RSM iterator page %d' % len(pages), payload, int(iid[5:]))
            check(len(pages) <= 5, 'RSM iterator does not stop: pages %s' % pages)
        check([len(p) for p in pages] in ([10, 10, 5], [10, 10, 5, 0]),
              'RSM iterator: page sizes %s, expected 10, 10, 5' % [len(p) for p in pages])
        check(order == [item_id(i) for i in range(N_ITEMS)],
              'RSM iterator: items %s, expected each of item-00..item-%02d once, in publish order'
              % (order, N_ITEMS - 1))

        # 5b. The same by hand: <set><max/><after/></set>, checking the set.
        after = None
        order = []
        for p in range(4):
            q = alice.Iq(stype='get', sto=service)
            q['pubsub']['items']['node'] = node
            q['pubsub']['rsm']['max'] = str(PAGE)
            if after is not None:
                q['pubsub']['rsm']['after'] = after
            r = await iq('items page %d (after %r)' % (p + 1, after), q.send(timeout=IQ_TIMEOUT))
            rsm = r.xml.find('{%s}pubsub/{%s}set' % (NS_PUBSUB, NS_RSM))
            check(rsm is not None, 'items page %d: no <set xmlns=%s/> in the result: %s' % (p + 1, NS_RSM, r))
            ids = [iid for iid, _ in items_of(r)]
            count = rsm.find('{%s}count' % NS_RSM)
            check(count is not None and count.text == str(N_ITEMS),
                  'items page %d: <count/> is %r, expected %d: %s'
                  % (p + 1, None if count is None else count.text, N_ITEMS, r))
            first = rsm.find('{%s}first' % NS_RSM)
            last = rsm.find('{%s}last' % NS_RSM)
            if not ids:
                check(first is None and last is None,
                      'items page %d: empty page with <first/>/<last/>: %s' % (p + 1, r))
                break
            check(first is not None and last is not None and last.text,
                  'items page %d: no <first/>/<last/>: %s' % (p + 1, r))
            idx = first.get('index')
            if idx is not None:
                check(idx == str(len(order)), 'items page %d: <first index=%r>, expected %d'
                      % (p + 1, idx, len(order)))
            order.extend(ids)
            after = last.text
        check(order == [item_id(i) for i in range(N_ITEMS)],
              'RSM by hand: items %s, expected each of item-00..item-%02d once, in publish order'
              % (order, N_ITEMS - 1))

        # 6. purge ------------------------------------------------------------------------
        step('6 purge')
        await iq('purge %s' % node, owner['xep_0060'].purge(service, node, timeout=IQ_TIMEOUT))
        while True:
            ev, msg = await alice.next_event('purge notification')
            if ev == 'pubsub_publish' and msg['id'] in seen:
                continue  # a redelivered duplicate of an earlier publish
            break
        check(ev == 'pubsub_purge', 'alice: expected pubsub_purge, got %s: %s' % (ev, msg))
        check(msg['pubsub_event']['purge']['node'] == node,
              'purge notification for node %r, expected %r: %s'
              % (msg['pubsub_event']['purge']['node'], node, msg))
        r = await iq('get_items after purge', alice['xep_0060'].get_items(service, node, timeout=IQ_TIMEOUT))
        check(items_of(r) == [], 'get_items after purge returned %s' % [i for i, _ in items_of(r)])
        check(r['pubsub']['items']['node'] == node, 'get_items after purge: <items node=%r>: %s'
              % (r['pubsub']['items']['node'], r))

        # 7. delete -----------------------------------------------------------------------
        step('7 delete_node')
        await iq('delete_node %s' % node, owner['xep_0060'].delete_node(service, node, timeout=IQ_TIMEOUT))
        ev, msg = await alice.next_event('delete notification')
        check(ev == 'pubsub_delete', 'alice: expected pubsub_delete, got %s: %s' % (ev, msg))
        check(msg['pubsub_event']['delete']['node'] == node,
              'delete notification for node %r, expected %r: %s'
              % (msg['pubsub_event']['delete']['node'], node, msg))
        e = await iq_error('get_items of the deleted node',
                           alice['xep_0060'].get_items(service, node, timeout=IQ_TIMEOUT))
        etype, cond, app = error_conditions(e)
        check((etype, cond) == ('cancel', 'item-not-found'),
              'get_items of a deleted node: error %s/%s, expected cancel/item-not-found: %s'
              % (etype, cond, e))
        await alice.no_event(0.3, 'nothing after the delete notification')
        step('done')
    finally:
        for c in clients:
            try:
                await asyncio.wait_for(c.disconnect(wait=1.0), 3.0)
            except Exception:
                pass


def main():
    if len(sys.argv) != 2:
        print('usage: %s SERVICE_JID' % sys.argv[0], file=sys.stderr)
        return 1
    service = sys.argv[1]
    setup_logging()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    t0 = time.monotonic()
    try:
        try:
            loop.run_until_complete(asyncio.wait_for(cycle(service), TOTAL_TIMEOUT))
        finally:
            # Let slixmpp's own tasks (filters, keepalives) end quietly.
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for t in pending:
                t.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    except (Failure, asyncio.TimeoutError, Exception) as e:
        if isinstance(e, asyncio.TimeoutError):
            msg = 'the whole cycle took more than %.0f s' % TOTAL_TIMEOUT
        elif isinstance(e, Failure):
            msg = str(e)
        else:
            import traceback
            msg = 'unexpected %s: %s\n%s' % (type(e).__name__, e, traceback.format_exc())
        print('slixmpp_cycle: FAIL in step %s: %s' % (STEP[0], msg), file=sys.stderr)
        print('slixmpp_cycle: last stanzas exchanged:', file=sys.stderr)
        for line in TRAIL:
            print('  ' + line, file=sys.stderr)
        return 1
    print('slixmpp_cycle: PASS (%.1f s)' % (time.monotonic() - t0), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
