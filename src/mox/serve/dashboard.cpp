#include "mox/serve/dashboard.h"

namespace mox::serve {

// The page is static: everything it shows comes from GET /dashboard/data, drawn by the
// script as inline SVG. Strings from the data (model, customer and key names) reach the DOM
// only through textContent and setAttribute, never as markup. Every chart <svg> carries
// data-points="N" (the marks it drew) so that a test can tell real data was drawn.
const std::string& dashboard_html() {
  static const std::string html = R"MOXHTML(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>mox serve &middot; dashboard</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f5f6f8;color:#222}
header{background:#fff;border-bottom:1px solid #ddd;padding:12px 20px}
h1{font-size:18px;margin:0 0 8px}
#totals{display:flex;flex-wrap:wrap;gap:6px 28px}
.t b{display:block;font-size:22px;font-variant-numeric:tabular-nums}
.t span{color:#666;font-size:12px}
#status{color:#555;font-size:12px;margin-top:6px}
#error{color:#d62728;font-weight:600}
main{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:16px;padding:16px 20px}
section{background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px 12px}
h2{font-size:14px;margin:0 0 6px}
svg{width:100%;height:auto;display:block}
svg text{font:11px system-ui,sans-serif;fill:#444}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{padding:3px 8px;border-bottom:1px solid #eee;text-align:right}
th:nth-child(-n+2),td:nth-child(-n+2){text-align:left}
tfoot td{font-weight:600}
.wide{grid-column:1/-1}
</style></head>
<body>
<header><h1>mox serve &mdash; usage in <span id="month">this month</span></h1>
<div id="totals">
<div class="t"><b id="total-requests">&ndash;</b><span>requests</span></div>
<div class="t"><b id="total-errors">&ndash;</b><span>errors</span></div>
<div class="t"><b id="total-prompt-tokens">&ndash;</b><span>prompt tokens</span></div>
<div class="t"><b id="total-completion-tokens">&ndash;</b><span>completion tokens</span></div>
<div class="t"><b id="total-tokens">&ndash;</b><span>tokens</span></div>
<div class="t"><b id="total-classifications">&ndash;</b><span>classifications</span></div>
<div class="t"><b id="revenue">&ndash;</b><span>revenue</span></div>
</div>
<div id="status">loading&hellip;</div><div id="error"></div></header>
<main>
<section><h2>Requests per model <small class="win"></small></h2><svg id="chart-requests"></svg></section>
<section><h2>Tokens per model <small class="win"></small></h2><svg id="chart-tokens"></svg></section>
<section><h2>Latency per model, ms <small class="win"></small></h2><svg id="chart-latency"></svg></section>
<section><h2>Customers this month</h2><svg id="chart-customers"></svg></section>
<section><h2>Quota use per key this month</h2><svg id="chart-quota"></svg></section>
<section class="wide"><h2>Usage this month per customer and model</h2><table id="usage-table"><thead><tr>
<th>customer</th><th>model</th><th>requests</th><th>errors</th><th>prompt tokens</th><th>completion tokens</th>
<th>classifications</th></tr></thead><tbody></tbody><tfoot></tfoot></table></section>
</main>
<script>
'use strict';
const NS='http://www.w3.org/2000/svg';
const PAL=['#1f77b4','#ff7f0e','#2ca02c','#d62728','#9467bd','#8c564b','#e377c2','#7f7f7f','#bcbd22','#17becf'];
const W=600,H=250,M={l:52,r:12,t:28,b:30};
const $=id=>document.getElementById(id);
// The data URL: this page's path + /data, passing on token, minutes and bucket.
const q=new URLSearchParams(location.search),qs=new URLSearchParams();
for(const k of['token','minutes','bucket'])if(q.has(k))qs.set(k,q.get(k));
const DATA=location.pathname.replace(/\/+$/,'')+'/data'+(String(qs)?'?'+qs:'');

function el(tag,a,parent,text){
  const e=document.createElementNS(NS,tag);
  for(const k in a)e.setAttribute(k,a[k]);
  if(text!=null)e.textContent=text;
  if(parent)parent.appendChild(e);
  return e;
}
function tip(e,text){el('title',{},e,text);return e}
const plain=v=>String(Math.round(v||0));
function short(v){
  const a=Math.abs(v);
  if(a>=1e6)return +(v/1e6).toPrecision(3)+'M';
  if(a>=1e3)return +(v/1e3).toPrecision(3)+'k';
  return String(+v.toPrecision(3));
}
function money(v){return v===0?'0.00':Math.abs(v)<0.01?v.toPrecision(2):v.toFixed(2)}
function duration(s){
  s=Math.floor(s);const d=Math.floor(s/86400),h=Math.floor(s%86400/3600),m=Math.floor(s%3600/60);
  return (d?d+'d ':'')+(d||h?h+'h ':'')+(d||h||m?m+'m ':'')+s%60+'s';
}
// Ticks from 0 to at least max: about 4 steps of 1, 2 or 5 x 10^k (whole numbers for counts).
function ticks(max,whole){
  if(!(max>0))max=1;
  const raw=max/4,p=Math.pow(10,Math.floor(Math.log10(raw))),m=raw/p;
  let step=(m<=1?1:m<=2?2:m<=5?5:10)*p;
  if(whole)step=Math.max(1,Math.round(step));
  const top=Math.ceil(max/step-1e-9)*step,out=[];
  for(let i=0;i*step<=top+step/2;i++)out.push(i*step);
  return {top,out};
}
function frame(svg,h){svg.replaceChildren();svg.setAttribute('viewBox','0 0 '+W+' '+h);return svg}
function empty(svg,msg){
  frame(svg,70);svg.setAttribute('data-points','0');
  el('text',{x:W/2,y:40,'text-anchor':'middle',fill:'#888'},svg,msg);
}
function legend(svg,items){
  let x=M.l;
  for(const [name,colour,dash] of items){
    if(dash!==undefined)el('line',{x1:x,x2:x+18,y1:11,y2:11,stroke:colour,'stroke-width':2,'stroke-dasharray':dash},svg);
    else el('rect',{x:x,y:5,width:11,height:11,fill:colour},svg);
    el('text',{x:x+(dash!==undefined?22:15),y:15},svg,name);
    x+=(dash!==undefined?30:22)+name.length*6.2;
  }
}
// Axes of a time chart: y ticks with grid lines, x ticks in UTC at a round number of minutes.
function timeAxes(svg,t0,t1,ymax,whole,unit){
  const y=ticks(ymax,whole),sy=v=>H-M.b-v/y.top*(H-M.t-M.b),sx=t=>M.l+(t-t0)/(t1-t0)*(W-M.l-M.r);
  for(const v of y.out){
    el('line',{x1:M.l,x2:W-M.r,y1:sy(v),y2:sy(v),stroke:v?'#eee':'#999'},svg);
    el('text',{x:M.l-5,y:sy(v)+4,'text-anchor':'end'},svg,short(v));
  }
  el('text',{x:12,y:(H-M.b+M.t)/2,'text-anchor':'middle',transform:'rotate(-90 12 '+(H-M.b+M.t)/2+')'},svg,unit);
  const span=(t1-t0)/60000;
  const step=[1,2,5,10,15,30,60,120,180,360,720,1440,2880,10080].find(s=>span/s<=6)||20160;
  for(let t=Math.ceil(t0/(step*60000))*step*60000;t<=t1;t+=step*60000){
    const d=new Date(t).toISOString(),x=sx(t);
    if(x>W-M.r-14)break;  // no label cut off by the edge
    el('line',{x1:x,x2:x,y1:H-M.b,y2:H-M.b+4,stroke:'#999'},svg);
    el('text',{x:x,y:H-M.b+16,'text-anchor':'middle'},svg,step>=1440?d.slice(5,10):d.slice(11,16));
  }
  el('text',{x:W-M.r,y:H-2,'text-anchor':'end',fill:'#888'},svg,'UTC');
  return {sx,sy};
}
// Colours: models in the order the server lists them, then any other name the data holds
// (e.g. "-" for requests refused before their model was known).
function palette(names){const m=new Map();names.forEach(n=>{if(!m.has(n))m.set(n,PAL[m.size%PAL.length])});return m}
function window_(d){
  const bs=d.bucket_seconds*1000;
  return {bs,t0:Math.floor(Date.parse(d.since)/bs)*bs,t1:Math.max(Date.parse(d.generated_at),Date.parse(d.since)+bs)};
}
// Stacked bars per time bucket, one colour per model; value(bucket row) is what is stacked.
function stacked(svg,d,colours,value,whole,unit,none){
  const per=new Map();
  for(const b of d.buckets){
    const v=value(b);if(!(v>0))continue;
    const o=per.get(b.start)||new Map();o.set(b.model,(o.get(b.model)||0)+v);per.set(b.start,o);
  }
  if(!per.size)return empty(svg,none);
  let ymax=0;for(const o of per.values()){let s=0;for(const v of o.values())s+=v;ymax=Math.max(ymax,s)}
  frame(svg,H);
  const w=window_(d),a=timeAxes(svg,w.t0,w.t1,ymax,whole,unit);
  let n=0;
  for(const [start,o] of per){
    const t=Date.parse(start),x0=a.sx(t),x1=a.sx(Math.min(t+w.bs,w.t1));let acc=0;
    for(const [model,colour] of colours){
      const v=o.get(model);if(!v)continue;
      tip(el('rect',{x:x0,y:a.sy(acc+v),width:Math.max(1.5,x1-x0-1),height:Math.max(0.5,a.sy(acc)-a.sy(acc+v)),fill:colour},svg),
          model+' from '+start+': '+plain(v));
      acc+=v;n++;
    }
  }
  svg.setAttribute('data-points',n);
  legend(svg,[...colours].filter(([m])=>[...per.values()].some(o=>o.has(m))));
}
// Latency percentiles per model: the buckets' percentiles averaged over customers, weighted
// by requests (exact when one customer used the model in that bucket).
function latency(svg,d,colours,none){
  const per=new Map();
  for(const b of d.buckets){
    if(!(b.requests>0))continue;
    const k=b.model,m=per.get(k)||new Map(),o=m.get(b.start)||{n:0,p50:0,p95:0,p99:0};
    o.n+=b.requests;o.p50+=b.latency_p50_ms*b.requests;o.p95+=b.latency_p95_ms*b.requests;o.p99+=b.latency_p99_ms*b.requests;
    m.set(b.start,o);per.set(k,m);
  }
  if(!per.size)return empty(svg,none);
  let ymax=0;for(const m of per.values())for(const o of m.values())ymax=Math.max(ymax,o.p99/o.n);
  frame(svg,H);
  const w=window_(d),a=timeAxes(svg,w.t0,w.t1,ymax*1.05,false,'ms');
  const dashes={p50:'',p95:'6 3',p99:'2 2'};let n=0;
  for(const [model,colour] of colours){
    const m=per.get(model);if(!m)continue;
    const pts=[...m].map(([s,o])=>[Date.parse(s)+w.bs/2,o]).sort((x,y)=>x[0]-y[0]);
    for(const p of ['p50','p95','p99']){
      const xy=pts.map(([t,o])=>[Math.min(a.sx(t),W-M.r),a.sy(o[p]/o.n)]);
      el('path',{d:xy.map((q,i)=>(i?'L':'M')+q[0].toFixed(1)+' '+q[1].toFixed(1)).join(''),fill:'none',stroke:colour,
                 'stroke-width':p==='p50'?2:1.5,'stroke-dasharray':dashes[p]},svg);
      xy.forEach((q,i)=>{
        tip(el('circle',{cx:q[0],cy:q[1],r:p==='p50'?3:2.2,fill:colour},svg),
            model+' '+p+' from '+pts[i][1].start+': '+(pts[i][1][p]/pts[i][1].n).toFixed(1)+' ms');
        n++;
      });
    }
  }
  svg.setAttribute('data-points',n);
  legend(svg,[...[...colours].filter(([m])=>per.has(m)),['p50','#555',''],['p95','#555','6 3'],['p99','#555','2 2']]);
}
function customers(svg,d){
  const per=new Map();
  for(const u of d.month_usage){
    const o=per.get(u.customer)||{requests:0,tokens:0};
    o.requests+=u.requests;o.tokens+=u.prompt_tokens+u.completion_tokens;per.set(u.customer,o);
  }
  if(!per.size)return empty(svg,'no usage this month yet');
  const rows=[...per].sort((a,b)=>a[0]<b[0]?-1:1),rh=24,h=30+rows.length*rh;
  frame(svg,h);
  const cols=[['requests',120,150],['tokens',320,150]],rev=d.revenue;
  for(const [name,x] of cols)el('text',{x:x,y:14,'font-weight':600},svg,name);
  if(rev)el('text',{x:W-4,y:14,'text-anchor':'end','font-weight':600},svg,'revenue ('+rev.currency+')');
  let n=0;
  rows.forEach(([c,o],i)=>{
    const y=26+i*rh,colour=PAL[i%PAL.length];
    el('text',{x:4,y:y+13},svg,c.length>18?c.slice(0,17)+'\u2026':c);
    for(const [k,x,wmax] of cols){
      const max=Math.max(...rows.map(r=>r[1][k])),v=o[k];
      if(v>0){tip(el('rect',{x:x,y:y+2,width:Math.max(1.5,v/max*wmax),height:rh-8,fill:colour},svg),c+': '+plain(v)+' '+k);n++}
      el('text',{x:x+(v>0?v/max*wmax:0)+4,y:y+13},svg,plain(v));
    }
    if(rev)el('text',{x:W-4,y:y+13,'text-anchor':'end'},svg,money((rev.by_customer||{})[c]||0));
  });
  svg.setAttribute('data-points',n);
}
function quota(svg,d){
  if(!d.keys.length)return empty(svg,'no API keys yet (mox keys create)');
  const rh=24,h=8+d.keys.length*rh,bx=222,bw=200;
  frame(svg,h);
  d.keys.forEach((k,i)=>{
    const y=4+i*rh,g=el('g',{opacity:k.revoked?0.45:1},svg);
    const name=k.prefix+' \u00b7 '+(k.customer.length>14?k.customer.slice(0,13)+'\u2026':k.customer);
    el('text',{x:4,y:y+14},g,name);
    el('rect',{x:bx,y:y+3,width:bw,height:rh-9,fill:'#eee'},g);
    let label;
    if(k.monthly_tokens>0){
      const f=k.used_tokens/k.monthly_tokens,pct=(f*100).toFixed(1)+'%';
      tip(el('rect',{x:bx,y:y+3,width:Math.max(1,Math.min(1,f)*bw),height:rh-9,fill:f>=1?PAL[3]:f>=0.8?PAL[1]:PAL[2]},g),
          k.used_tokens+' of '+k.monthly_tokens+' tokens');
      label=pct+' of '+plain(k.monthly_tokens);
    }else label='unlimited \u00b7 '+plain(k.used_tokens)+' used';
    el('text',{x:bx+bw+6,y:y+14},g,label+(k.revoked?' \u00b7 revoked':''));
  });
  svg.setAttribute('data-points',d.keys.length);
}
function table(d){
  const body=$('usage-table').tBodies[0],foot=$('usage-table').tFoot;
  const f=['requests','errors','prompt_tokens','completion_tokens','classifications'];
  const row=(parent,cells)=>{const tr=document.createElement('tr');for(const c of cells)tr.appendChild(document.createElement('td')).textContent=c;parent.appendChild(tr)};
  body.replaceChildren();foot.replaceChildren();
  if(!d.month_usage.length){row(body,['no usage this month yet','','','','','','']);return}
  for(const u of d.month_usage)row(body,[u.customer,u.model,...f.map(k=>plain(u[k]))]);
  row(foot,['total','',...f.map(k=>plain(d.totals[k]))]);
}
function draw(d){
  const t=d.totals,set=(id,v)=>{$(id).textContent=v};
  set('month',d.month);
  set('total-requests',plain(t.requests));set('total-errors',plain(t.errors));
  set('total-prompt-tokens',plain(t.prompt_tokens));set('total-completion-tokens',plain(t.completion_tokens));
  set('total-tokens',plain(t.prompt_tokens+t.completion_tokens));set('total-classifications',plain(t.classifications));
  if(d.revenue){set('revenue',money(d.revenue.total)+' '+d.revenue.currency);$('revenue').dataset.value=String(d.revenue.total)}
  else{set('revenue','no price list');delete $('revenue').dataset.value}
  const minutes=Math.round((Date.parse(d.generated_at)-Date.parse(d.since))/60000);
  for(const e of document.querySelectorAll('.win'))e.textContent='(last '+minutes+' min, '+d.bucket_seconds+' s buckets)';
  const colours=palette([...d.models.map(m=>m.id),...d.buckets.map(b=>b.model)]);
  const none='no requests in the last '+minutes+' minutes';
  stacked($('chart-requests'),d,colours,b=>b.requests,true,'requests',none);
  stacked($('chart-tokens'),d,colours,b=>b.prompt_tokens+b.completion_tokens,true,'tokens','no tokens in the last '+minutes+' minutes');
  latency($('chart-latency'),d,colours,none);
  customers($('chart-customers'),d);
  quota($('chart-quota'),d);
  table(d);
  set('status','updated '+d.generated_at+' \u00b7 up '+duration(d.uptime_s)+' \u00b7 '+d.inflight+' in flight');
  set('error','');
}
let loaded=false;
async function load(){
  let d=null;
  try{
    const r=await fetch(DATA,{cache:'no-store'});
    if(r.status===401)throw new Error('admin token missing or wrong: open /dashboard?token=ADMIN_TOKEN');
    if(!r.ok){
      let m='';try{m=(await r.json()).error.message}catch(e){}
      throw new Error('GET /dashboard/data failed: HTTP '+r.status+(m?': '+m:''));
    }
    d=await r.json();
  }catch(e){
    $('error').textContent=e instanceof TypeError?'cannot reach the server: '+e.message:e.message;
    if(!loaded)$('status').textContent='no data yet';
  }
  if(d)try{draw(d);loaded=true}catch(e){$('error').textContent='cannot draw the data: '+e.message}
  setTimeout(load,5000);
}
load();
</script>
</body></html>
)MOXHTML";
  return html;
}

}  // namespace mox::serve
