// TypeScript typings of herald.js (served at /herald.d.ts).

export interface HeraldOptions {
  /** A JWT sent in the first frame ({"op":"connect","token":...}). */
  token?: string;
  /** Called before every (re)connect and to refresh the token before it expires. */
  getToken?: () => string | Promise<string>;
  /** Reconnect after the socket drops (default true). */
  reconnect?: boolean;
  /** First reconnect delay in ms (default 500); doubles up to maxDelay, with jitter. */
  minDelay?: number;
  /** Largest reconnect delay in ms (default 20000). */
  maxDelay?: number;
  /** Frames held while disconnected (default 1000); beyond it publish rejects. */
  bufferLimit?: number;
  /** Refresh the token this many ms before it expires (default 30000, at most half its life). */
  refreshMargin?: number;
  /** Ping the server this often in ms (default 25000; 0: never); a socket silent for two intervals is given up and reconnected. */
  pingInterval?: number;
  onerror?: (e: unknown) => void;
  /** Every close of the socket (a reconnect follows unless closed). */
  onclose?: (code: number, reason: string) => void;
  onstate?: (state: HeraldState) => void;
  /** Every successful (re)connect. */
  onconnect?: (who: { client: string; user: string }) => void;
}

export type HeraldState = "connecting" | "connected" | "disconnected" | "closed";

export interface MessageProperties {
  content_type?: string;
  content_encoding?: string;
  delivery_mode?: 1 | 2;
  priority?: number;
  correlation_id?: string;
  reply_to?: string;
  expiration?: string;
  message_id?: string;
  timestamp?: number;
  type?: string;
  user_id?: string;
  app_id?: string;
  headers?: Record<string, unknown>;
}

export interface HeraldMessage {
  op: "message";
  /** The subscription id, "$user" for per-user messages, "$reply" for replies. */
  sub: string;
  tag: number;
  exchange: string;
  key: string;
  body: string;
  encoding?: "string" | "base64";
  headers: Record<string, unknown>;
  properties: MessageProperties;
  redelivered: boolean;
  /** Stream subscriptions: the message's offset. */
  offset?: number;
  ack(): void;
  nack(requeue?: boolean): void;
}

export interface Subscription {
  id?: string;
  queue?: string;
  exchange?: string;
  key?: string;
  /** A stream to read; after a reconnect it resumes right after the last offset delivered. */
  stream?: string;
  /** Where a stream subscription starts: "first", "last", "next" (default), an offset, or an interval ("1h", "30m"). */
  offset?: number | "first" | "last" | "next" | string;
  ack?: "auto" | "client";
  prefetch?: number;
  /** Join the presence set of the channel "<exchange>/<key>" (a stream subscription: the stream's name). */
  presence?: boolean;
  /** Get join and leave events of the channel. */
  join_leave?: boolean;
  /** Shown with this client in the presence set (a token's info claim wins). */
  info?: unknown;
}

export interface PresenceClient {
  client: string;
  user: string;
  info?: unknown;
}

export interface PresenceEvent extends PresenceClient {
  op: "join" | "leave";
  channel: string;
}

export interface SubscriptionEvents {
  onjoin?: (e: PresenceEvent) => void;
  onleave?: (e: PresenceEvent) => void;
  /** The presence set after every (re)subscribe. */
  onpresence?: (clients: PresenceClient[]) => void;
  /**
   * The server's answer to every (re)subscribe. For a stream subscription
   * that resumed from an offset, recovered says whether nothing in the gap
   * was lost (false: retention dropped part of it, or the offset was past
   * the stream's end).
   */
  onsubscribed?: (answer: { op: "subscribed"; id: string; queue: string; recovered?: boolean }) => void;
}

export interface PublishOptions {
  confirm?: boolean;
  properties?: MessageProperties;
  headers?: Record<string, unknown>;
  reply_to?: string;
  encoding?: "string" | "base64";
}

export declare class Herald {
  static connect(url?: string, options?: HeraldOptions): Promise<Herald>;
  static channel(exchange: string, key: string): string;
  constructor(url?: string, options?: HeraldOptions);
  readonly state: HeraldState;
  /** This socket's client id (changes on reconnect). */
  readonly client: string | null;
  readonly user: string | null;
  subscribe(what: Subscription, cb: (m: HeraldMessage) => void, events?: SubscriptionEvents): Promise<string>;
  unsubscribe(id: string): Promise<unknown>;
  presence(channel: string): Promise<PresenceClient[]>;
  publish(exchange: string, key: string, body: string, opts?: PublishOptions): Promise<unknown>;
  send(to: string, body: string, opts?: PublishOptions): Promise<unknown>;
  onUser(cb: (m: HeraldMessage) => void): () => void;
  request(exchange: string, key: string, body: string, opts?: PublishOptions & { timeout?: number }): Promise<HeraldMessage>;
  rtc(peerId: string, config?: RTCConfiguration): HeraldRTC;
  onRtc(cb: (session: HeraldRTC) => void, config?: RTCConfiguration): () => void;
  close(): void;
}

export declare class HeraldRTC {
  readonly peer: string;
  readonly id: string;
  readonly pc: RTCPeerConnection;
  /** Caller: send the offer (create data channels or tracks first). */
  start(): Promise<void>;
  /** Callee: answer the incoming offer. */
  accept(): Promise<void>;
  reject(): void;
  close(): void;
}
